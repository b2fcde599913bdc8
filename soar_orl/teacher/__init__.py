"""The teacher's side of SOAR: instruction prompt, output parser, rejection sampling, rewards."""
