"""Runners that chain the stages: ``vsfa demo`` (:mod:`interp.pipeline.demo`) and ``vsfa run``
(:mod:`interp.pipeline.run`, configured by :mod:`interp.pipeline.experiment`)."""
