"""Collection exports (CSV or JSON lines with image files): pure logic, no I/O.

* :mod:`.mapping`: the declarative TOML mapping (which column is what) and its checks;
* :mod:`.text`: reading the export's bytes into verbatim rows, decoding with a stated fallback,
  and repairing mojibake value by value;
* :mod:`.makers`: maker lists as exports write them, broken ones included;
* :mod:`.normalise`: rows -> the shared ``artworks`` staging layout, finished by
  :mod:`artsim_pipeline.core.normalise`.

The files themselves are read by :mod:`artsim_pipeline.resources.clients.export`.
"""
