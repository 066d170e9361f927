"""Calibrate and validate against silicon: archsim's times for measured single-op calls.

- ``measurements``: the measurement CSV, read and checked (``load_measurements``);
- ``predict``: archsim's time for a measured call (``predict``, ``Predictor``) and the plain
  roofline's (``roofline``);
- ``report``: errors per row, per op and overall (``evaluate``, ``summarize``, ``table``);
- ``outputs``: ``--out``'s rows.csv and predicted-vs-measured plot;
- ``parameters`` and ``fit``: the chip's calibration fields fitted to the measurements
  (``fit``, ``write_fitted``).

The command is ``archsim calibrate HW.yaml MEASURED.csv [--json] [--out DIR] [--fit OUT.yaml]``.
"""
