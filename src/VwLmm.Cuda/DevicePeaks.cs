namespace VwLmm.Cuda;

/// <summary>Datasheet peaks of one GPU model: DRAM bandwidth in GB/s and fp32 FLOP/s on CUDA cores (no tensor cores, no TF32).</summary>
public sealed record DevicePeak(string Model, double BandwidthGBs, double Fp32Tflops)
{
    /// <summary>Arithmetic intensity (flop/byte) above which a kernel is compute-bound on this GPU.</summary>
    public double RidgeFlopsPerByte => Fp32Tflops * 1e12 / (BandwidthGBs * 1e9);
}

/// <summary>Peak figures keyed by the name the driver reports (cuDeviceGetName).</summary>
public static class DevicePeaks
{
    // Sources, NVIDIA datasheets: "NVIDIA A100 Tensor Core GPU" (2021): FP32 19.5 TFLOPS; 40GB PCIe and SXM 1,555 GB/s,
    // 80GB PCIe 1,935 GB/s, 80GB SXM 2,039 GB/s. "NVIDIA H100 Tensor Core GPU" (2023): SXM FP32 67 TFLOPS, 3.35 TB/s;
    // PCIe FP32 51 TFLOPS, 2 TB/s; NVL FP32 60 TFLOPS, 3.9 TB/s. "NVIDIA H200 Tensor Core GPU" (2024): SXM FP32 67 TFLOPS,
    // NVL FP32 60 TFLOPS, both 4.8 TB/s.
    // Each entry lists the words (case-insensitive, between spaces or dashes) a name must contain; the first match wins,
    // so specific entries come first. Driver names: "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB",
    // "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3" (SXM5), "NVIDIA H100 PCIe", "NVIDIA H100 NVL",
    // "NVIDIA H200", "NVIDIA H200 NVL". Whole words keep "GH200" (Grace Hopper, other memory) out of the H200 rows.
    private static readonly (string[] Words, DevicePeak Peak)[] Table =
    [
        (["H200", "NVL"], new("H200 NVL", 4800, 60)),
        (["H200"], new("H200 SXM", 4800, 67)),
        (["H100", "PCIe"], new("H100 PCIe", 2000, 51)),
        (["H100", "NVL"], new("H100 NVL", 3900, 60)),
        (["H100"], new("H100 SXM", 3350, 67)),
        (["A100", "80GB", "PCIe"], new("A100 80GB PCIe", 1935, 19.5)),
        (["A100", "PCIe"], new("A100 40GB PCIe", 1555, 19.5)),
        (["A100", "80GB"], new("A100 80GB SXM", 2039, 19.5)),
        (["A100"], new("A100 40GB SXM", 1555, 19.5)),
    ];

    /// <summary>The peaks for <paramref name="deviceName"/>, or null for a GPU not in the table.</summary>
    public static DevicePeak? Find(string deviceName)
    {
        var words = deviceName.Split([' ', '-'], StringSplitOptions.RemoveEmptyEntries);
        foreach (var (required, peak) in Table)
            if (required.All(r => words.Contains(r, StringComparer.OrdinalIgnoreCase))) return peak;
        return null;
    }
}
