"""The parts of the training loop in `sagan.train`, each in its own module:

- `steps`: one discriminator update, one generator update, the EMA of G;
- `terms`: extra loss terms for those updates (regularisers), with the state a resume needs;
- `state`: what a run holds (the built parts and its counters), what a checkpoint stores of it, and the resume;
- `periodic`: the work between steps: the train record, alarms, sample grids, evaluation, the stop check.
"""
