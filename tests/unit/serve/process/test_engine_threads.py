"""How many BLAS threads the reference engine gets inside the Triton that trtpipe starts."""

from trtpipe.serve.process.launcher import engine_thread_env


def test_by_default_one_core_is_left_to_the_frontend():
    assert engine_thread_env(None, environ={}, cpus=2) == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    assert engine_thread_env(None, environ={}, cpus=16)["OPENBLAS_NUM_THREADS"] == "15"


def test_a_single_core_machine_still_gets_one_thread():
    assert engine_thread_env(None, environ={}, cpus=1)["OPENBLAS_NUM_THREADS"] == "1"


def test_thread_settings_already_in_the_environment_are_kept():
    assert engine_thread_env(None, environ={"OMP_NUM_THREADS": "4"}, cpus=8) == {}


def test_an_explicit_count_wins_over_the_environment():
    assert engine_thread_env(6, environ={"OPENBLAS_NUM_THREADS": "2"}, cpus=8) == {
        "OPENBLAS_NUM_THREADS": "6", "OMP_NUM_THREADS": "6"}
