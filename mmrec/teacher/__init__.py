"""mmrec.teacher: the KDSR teacher (denoising autoencoder, correlations, codebook)."""

from mmrec.teacher.correlation import (
    IGNORE_CODE,
    PairTeacher,
    correlation,
    dissected,
    load_teacher,
    nearest_code,
)

__all__ = ["IGNORE_CODE", "PairTeacher", "correlation", "dissected", "load_teacher", "nearest_code"]
