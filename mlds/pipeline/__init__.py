"""The parts of the one reader -> filter -> writer pipeline (:func:`mlds.convert.convert`)."""
