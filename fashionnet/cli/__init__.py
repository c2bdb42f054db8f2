"""What every command shares: the options spelled one way (``options``) and the one-line refusal
(``errors``). Neither loads torch, so a command's ``--help`` stays fast."""
