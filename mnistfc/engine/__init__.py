"""Training: a quiet TensorFlow process (``runtime``), the Keras engine for one model
(``model``, ``train``) and the packed engine for many (``pack``). It knows nothing of
executors, sweeps or reports."""
