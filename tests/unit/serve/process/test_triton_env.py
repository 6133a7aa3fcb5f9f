"""Which environment variables reach tritonserver and its Python-backend stubs (serve.process.triton_env)."""

from __future__ import annotations

from pathlib import Path

from trtpipe.serve.process.launcher import TritonInstall, TritonServer
from trtpipe.serve.process.triton_env import is_passed_to_triton, triton_environment

CALLER = {
    # what Triton needs or is tuned by: passed
    "PATH": "/venv/bin:/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp/x",
    "LD_LIBRARY_PATH": "/opt/lib", "PYTHONPATH": "/src", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "3",
    "OPENBLAS_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": "0,1", "NVIDIA_VISIBLE_DEVICES": "all",
    "NCCL_DEBUG": "WARN", "OMPI_MCA_btl": "^openib", "TRTLLM_ORCHESTRATOR": "1", "HF_HOME": "/hf",
    "HF_HUB_OFFLINE": "1", "TRTPIPE_HOME": "/th", "TRTPIPE_CONFIG_PATH": "/cfg",
    # secrets: never passed, allowlisted prefix or not
    "HF_TOKEN": "hf_x", "HUGGING_FACE_HUB_TOKEN": "hf_y", "HF_TOKEN_PATH": "/t", "TRTPIPE_API_KEYS": "k1,k2",
    "TRTPIPE_API_KEY": "k", "NGC_API_KEY": "n", "AWS_SECRET_ACCESS_KEY": "a", "AWS_ACCESS_KEY_ID": "i",
    "GITHUB_TOKEN": "g", "PGPASSWORD": "p", "DB_PASSWORD": "p", "OPENAI_API_KEY": "o", "TRITON_SECRET": "s",
    "CUDA_PRIVATE_THING": "x", "TRTPIPE_CREDENTIALS": "c",
    # not needed by Triton: not passed
    "SSH_AUTH_SOCK": "/s", "PROMETHEUS_MULTIPROC_DIR": "/m", "DISPLAY": ":0", "EDITOR": "vi", "PWD": "/w",
}
PASSED = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONUNBUFFERED",
          "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
          "NVIDIA_VISIBLE_DEVICES", "NCCL_DEBUG", "OMPI_MCA_btl", "TRTLLM_ORCHESTRATOR", "HF_HOME", "HF_HUB_OFFLINE",
          "TRTPIPE_HOME", "TRTPIPE_CONFIG_PATH"}


def test_only_allowlisted_names_that_do_not_look_like_secrets_reach_triton():
    assert triton_environment(CALLER) == {name: CALLER[name] for name in PASSED}


def test_names_with_token_key_secret_password_or_credential_are_refused_whatever_their_prefix():
    for name in ("HF_TOKEN", "TRTPIPE_API_KEYS", "CUDA_KEY", "PYTHON_SECRET", "TRTPIPE_DB_PASSWD", "HF_API_KEY",
                 "TRITON_KEYS_DIR", "hf_token"):
        assert not is_passed_to_triton(name), name
    for name in ("MKL_NUM_THREADS", "KMP_AFFINITY", "TRTPIPE_HOME", "PYTHONHASHSEED"):  # 'K' alone is no key
        assert is_passed_to_triton(name), name


def test_the_launch_settings_go_on_top_of_the_filtered_environment():
    assert triton_environment({"PATH": "/usr/bin", "HF_TOKEN": "x"}, {"PATH": "/venv/bin:/usr/bin"},
                              {"OMP_NUM_THREADS": "1", "TRTLLM_ORCHESTRATOR": "1"}) == {
        "PATH": "/venv/bin:/usr/bin", "OMP_NUM_THREADS": "1", "TRTLLM_ORCHESTRATOR": "1"}


def test_the_triton_server_starts_with_the_allowlisted_environment_plus_its_install_and_threads(tmp_path: Path):
    server = TritonServer(tmp_path, engine_threads=2)
    install = TritonInstall(Path("/bin/tritonserver"), None, {"LD_LIBRARY_PATH": "/libs:/opt/lib"})
    env = server.environment(install, environ={"HOME": "/root", "HF_TOKEN": "hf_x", "LD_LIBRARY_PATH": "/opt/lib",
                                               "TRTPIPE_API_KEYS": "k"})
    assert env == {"HOME": "/root", "LD_LIBRARY_PATH": "/libs:/opt/lib", "OPENBLAS_NUM_THREADS": "2",
                   "OMP_NUM_THREADS": "2"}


def test_extra_env_passes_a_variable_the_allowlist_leaves_out(tmp_path: Path):
    server = TritonServer(tmp_path, engine_threads=1, extra_env={"MY_MODEL_SETTING": "on"})
    env = server.environment(TritonInstall(Path("/bin/tritonserver"), None), environ={"MY_MODEL_SETTING": "off"})
    assert env == {"MY_MODEL_SETTING": "on", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
