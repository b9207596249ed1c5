"""The console's progress callbacks."""

from tuneforge.console import training_progress


def test_only_the_main_process_draws_training_progress():
    with training_progress(main_process=False) as progress:
        assert progress is None
    with training_progress(main_process=True) as progress:
        assert callable(progress)  # nothing drawn until the first step
