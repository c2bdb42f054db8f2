"""What is fitted after training and stored in the checkpoint beside the weights: the learned whitening
of the search descriptor (``whitening``), the out-of-distribution density (``ood``), each clothes
type's landmark layout in its garment box (``landmark_prior``) and the category temperature
(``temperature``); ``store`` fits them all at the end of a training run."""
