"""λ₀: the curvature of the training loss at initialization, matrix-free.

The user's data becomes batches (:mod:`.data`) on a private copy of the model (:mod:`.isolation`);
Jacobian products (:mod:`.jacobian`, micro-batched in :mod:`.chunked`, sharded across processes in
:mod:`.distributed`) and the loss's Hessian factor (:mod:`.losses`) make the output-space operator
(:mod:`.operators`), whose top eigenvalue Lanczos finds (:mod:`.lanczos`); :mod:`.estimate` runs it
over a few batches.
"""
