"""The datasets: the npz and IDX formats read checked (``formats``), a dataset found,
split and preprocessed (``dataset``), and its download on a login node (``fetch``)."""
