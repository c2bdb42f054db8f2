"""Any photo in, what the page shows out: the ``Predictor`` (``predictor``) and its ``Prediction``
(``prediction``), the second pass on a crop around a small garment (``localisation``), the face cut
(``faces``) and the averaging of a photo's views (``retrieval_time``)."""
