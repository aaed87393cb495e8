# Sourced by run.sh and gpu-session.sh: makes libcublas loadable.
# cuBLAS ships with the CUDA toolkit or pip's nvidia-cublas(-cu12), not with the driver: when the loader knows no
# libcublas, look where those install it (pip: nvidia/cublas/lib for CUDA 12, nvidia/cu13/lib for CUDA 13).
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.1[123]'; then
  pip_libs=$(python3 -c 'import nvidia, glob, os; print(" ".join(d for p in nvidia.__path__ for d in sorted(glob.glob(os.path.join(p, "*", "lib")))))' 2>/dev/null || true)
  for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda/targets/x86_64-linux/lib $pip_libs; do
    if ls "$d"/libcublas.so.1[123]* >/dev/null 2>&1; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "using cuBLAS from $d"
      break
    fi
  done
fi
