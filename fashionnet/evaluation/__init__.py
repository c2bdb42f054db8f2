"""The DeepFashion retrieval evaluation: the query / gallery protocols (``protocols``), the metrics
(``retrieval_metrics``, ``landmark_metrics``, ``box_metrics``, ``label_metrics``), the model's outputs
over a dataset (``outputs``), the run with its baselines (``benchmark``) and its report (``report``)."""
