"""Stage 1: the PCRT dataset (characters, arm kinematics, muscles, proprioceptive inputs)."""
