"""Evaluation: language-model loss on fixed batches (``lm_loss``) and multiple-choice tasks
scored as lm-evaluation-harness scores them (``multiple_choice``, tasks in ``conf/eval/``)."""
