"""dicommove: pull imaging cohorts out of a PACS with DICOM C-MOVE.

>>> import dicommove
>>> df = dicommove.move("ORTHANC@127.0.0.1:4242", ["1.2.3"])  # doctest: +SKIP
"""
