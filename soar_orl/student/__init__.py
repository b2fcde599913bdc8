"""The inner loop of SOAR: a student worker (trainer + colocated vLLM) that runs inner RLOO jobs."""
