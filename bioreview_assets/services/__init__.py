"""Services: the work the assets and the CLI ask for, orchestrating the layers below without torch of their own.

publish (the Hub-ready adapter folder), similarity (a matcher's encoder or judge, and scoring with it), judge (the
cached LLM judge), serving (which weights a generation uses, its key and token limit), generation_runner (the
resumable generation loop over a backend), tokenization (the model's prompt identity), score_tracking (scores
logged to the adapter's MLflow run), and one per partitioned asset the assets delegate to: sft_corpus (chat rows),
benchmark_split (a split validated and written), adapter_training (train and publish an adapter), split_generation (a
model's output on a split), system_concerns (a system's concerns under its policy), split_scoring (a system's scores
on a split). They import ml/ (lazily where it loads torch), store/, core/ and reporting/;
ml/ never imports them.
"""
