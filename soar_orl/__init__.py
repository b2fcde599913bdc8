"""soar-orl: SOAR (a teacher LLM trained by meta-RL to write stepping-stone problems for a
student LLM) on OpenRLHF, with one code path for CPU and GPU backends."""

__version__ = "0.1.0"
