"""Evaluation: language-model loss on fixed batches and multiple-choice tasks scored as
lm-evaluation-harness scores them (docs/evaluation.md).

* ``lm_loss``: the forget and retain losses of a trial;
* ``questions``: the data model (question, task, scoring);
* ``mc_sources``: where questions come from (one registered loader per source kind);
* ``tasks``: a ``conf/eval/<name>.yaml`` block to a task (subjects, subsample, checks);
* ``prompts``: the prompt and the continuations each scoring scores;
* ``encoding``: prompt and continuation to token ids, split as lm-eval splits them;
* ``batches``: the padded tensors, built once per task;
* ``evaluator``: ``MultipleChoiceEvaluator``, which scores a model (forwards only);
* ``metrics``: accuracy and the probability of the correct choice, per scoring;
* ``__main__``: ``python -m mudman.evaluation model=<name> eval=<task>``.
"""
