"""`complaints replay`: the command (run), its accounting (tally), and the CFPB export reader
(cfpb), which the classifier measurement (tools.measure) reads too."""
