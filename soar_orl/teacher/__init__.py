"""The teacher's side of SOAR: rejection sampling, dataset rewards, and the OpenRLHF teacher
trainer (its instruction and output format are in soar_orl/formats.py)."""
