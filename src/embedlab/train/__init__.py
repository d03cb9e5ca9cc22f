"""Fine-tuning (``embedlab finetune``): training data, leakage check, hard-negative mining,
contrastive training and a before/after verdict on held-out data.  Sits on top of the core;
the core never imports it."""
