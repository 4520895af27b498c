"""Runners that chain the stages: ``vsfa demo`` (:mod:`interp.pipeline.demo`) and ``vsfa run``
(:mod:`interp.pipeline.run`, configured by :mod:`interp.pipeline.experiment`). Both run their
steps through :mod:`interp.pipeline.steps` and find the worlds they run on in
:mod:`interp.pipeline.worlds`."""
