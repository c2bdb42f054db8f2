"""Training, laid out like torchvision's references: the options (``args``), the data (``data``), one
epoch and its validation (``loop``), ``main`` (``train``, the ``fashionnet-train`` command), the losses
and triplet miners (``losses``, ``miners``), the loss-weight schedule (``schedule``), the curves
(``log``) and the process group and seeding (``distributed``)."""
