"""Studies: named runs over a batch of starts, outcome tables, basin maps, and scale-out.

A :class:`Study` holds a problem, the starts ``x0`` (a dict of blocks, as for
:func:`odeopt.integrate`) and named runs: :class:`Run` (a system, a scheme and exactly the
keywords ``integrate`` takes) or :class:`OptimizerRun` (a torch optimizer class, from
``Run.torch``, stepped on the problem). :meth:`Study.run` runs every run over chunks of the
starts, in this process, in worker processes (``workers=``) or on a dask.distributed cluster
(``client=``); every trajectory depends on its own start (and seed) only, so the result does
not depend on the workers or the cluster, nor on the chunking except in the last bits of
problems built on matrix products (numpy's BLAS kernels differ by batch size). A
:class:`StudyResult` holds the final states as an xarray Dataset (run × start), decides
every start's outcome as Bensaid's protocol does (ALGORITHMS.md §5), tabulates them, plots
them, and saves to / loads from netCDF.
"""

from .result import OUTCOMES, StudyResult
from .runs import OptimizerRun, Run
from .study import Study

__all__ = ["OUTCOMES", "OptimizerRun", "Run", "Study", "StudyResult"]
