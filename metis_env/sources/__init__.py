"""Where endpoints come from. Each source is a package of its own that hands the store the same kind
of record: ``ssh`` (the endpoint files on the SambaNova login node, one MobilePASS+ login) and
``gateway`` (the ALCF Inference Service gateway, with a Globus login). Kept empty: the hot path
imports submodules of it and must not pay for anything here."""
