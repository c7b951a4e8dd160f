"""A lab's own movements and neurons: ``deepdraw encode`` and ``deepdraw predict`` (docs/encode.md).

- :mod:`.io`: readers of movement files (CSV, NPY, HDF5, NWB ``SpatialSeries``, DeepLabCut 3-D CSV) into
  :class:`~deepdraw.encode.io.Recording` objects;
- :mod:`.prepare`: gaps, resampling to the models' 15 ms grid, the lab-to-world transform, unit and
  reach checks, the cutting of movements into 320-frame windows;
- :mod:`.encode`: recordings -> joints (the dataset's IK) -> muscle lengths (the dataset's engines) ->
  spindle inputs (the dataset's formulas) -> ``encoded.h5``; then every model's activations;
- :mod:`.neural`: readers of recorded neurons (NPY, HDF5, NWB ``Units`` with trials), binned on the
  encoded movements' frames;
- :mod:`.predict`: per layer, PCA + ridge regression with inner cross-validation, K-fold explained
  variance per neuron, all neurons in one solve; :mod:`.results`: ``predict.h5`` read back into tables;
  :mod:`.figures`: its heat map, best-layer, trained-vs-untrained and noise-ceiling plots; the HTML
  report of a predict folder is :mod:`deepdraw.report.predict`;
- :mod:`.cli`: the subcommands ``encode``, ``predict`` and ``predict-report``.
"""
