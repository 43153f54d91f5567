#include "numeric/backend.h"

#include "base/error.h"
#include "numeric/dequantize.h"
#include "numeric/linalg.h"

#include <spdlog/spdlog.h>

#include <dlfcn.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

namespace lathe {

namespace {

const GpuPlatform *g_platform = nullptr;
bool g_fromPlugin = false; // g_platform is the plugin's

// The loaded plugin (gpuBackendCompiled in backend.h): its handle and path, or why there is none. Loaded once.
struct GpuPlugin {
    void *handle = nullptr;
    std::string where = "this build has no CUDA backend";
};

#ifndef LATHE_GPU_PLUGIN_NAME
#define LATHE_GPU_PLUGIN_NAME "liblathe_gpu.so"
#endif

// Where the plugin may be, in the order tried: $LATHE_GPU_PLUGIN, beside the executable, ../lib/lathe/.
std::vector<std::filesystem::path> pluginCandidates() {
    namespace fs = std::filesystem;
    std::vector<fs::path> out;
    if (const char *env = std::getenv("LATHE_GPU_PLUGIN"); env && *env)
        out.emplace_back(env);
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        out.push_back(exe.parent_path() / LATHE_GPU_PLUGIN_NAME);
        out.push_back(exe.parent_path().parent_path() / "lib" / "lathe" / LATHE_GPU_PLUGIN_NAME);
    }
    std::erase_if(out, [](const fs::path &p) {
        std::error_code e;
        return !fs::exists(p, e);
    });
    return out;
}

const char *const kNoPlugin = "this build has no CUDA backend (no " LATHE_GPU_PLUGIN_NAME
                              " beside the program or in ../lib/lathe/)";

const GpuPlugin &gpuPlugin() {
    static const GpuPlugin plugin = [] {
        namespace fs = std::filesystem;
        GpuPlugin p;
        p.where = kNoPlugin;
        std::string errors;
        for (const fs::path &c : pluginCandidates()) {
            void *h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (!h) {
                const char *e = dlerror();
                errors += (errors.empty() ? "" : "; ") + std::string(e ? e : c.string() + ": cannot be loaded");
                continue;
            }
            using Entry = const GpuPlatform *(*)(int, const std::shared_ptr<spdlog::logger> *);
            auto entry = reinterpret_cast<Entry>(dlsym(h, "lathe_gpu_platform"));
            const std::shared_ptr<spdlog::logger> logger = spdlog::default_logger();
            const GpuPlatform *platform = entry ? entry(kGpuPluginAbi, &logger) : nullptr;
            if (!platform) {
                errors += (errors.empty() ? "" : "; ") + c.string() + " is from another build of Lathe";
                dlclose(h);
                continue;
            }
            p.handle = h;
            p.where = c.string();
            if (!g_platform) {
                g_platform = platform;
                g_fromPlugin = true;
            }
            return p;
        }
        if (!errors.empty())
            p.where = "the GPU plugin did not load: " + errors;
        return p;
    }();
    return plugin;
}

// The platform: registered, else the plugin's (loading it).
const GpuPlatform *platform() {
    if (!g_platform)
        (void)gpuPlugin();
    return g_platform;
}

class CpuBackend final : public ComputeBackend {
public:
    std::string name() const override { return "cpu"; }
    DeviceInfo device() const override {
        return {"CPU (" + std::to_string(std::thread::hardware_concurrency()) + " threads)", 0, 0, 0};
    }
    void dequantize(DType type, const void *src, size_t elems, float *dst) override {
        dequantizeCpu(type, src, elems, dst);
    }
    void symmetricEigen(const double *a, int64_t n, std::vector<double> &values,
                        std::vector<double> *vectors) override {
        lathe::symmetricEigen(a, n, values, vectors);
    }
    std::vector<double> singularValues(const float *a, int64_t rows, int64_t cols) override {
        return lathe::singularValues(a, rows, cols);
    }
};

} // namespace

std::string DeviceInfo::label() const {
    if (index < 0)
        return name;
    char mem[32];
    std::snprintf(mem, sizeof mem, "%.1f GiB", double(totalMemory) / double(1ull << 30));
    return "cuda:" + std::to_string(index) + " " + name + " (" + mem + ")";
}

DeviceChoice DeviceChoice::parse(const std::string &text) {
    if (text.empty() || text == "auto")
        return {DevicePreference::Auto, 0};
    if (text == "cpu")
        return {DevicePreference::Cpu, 0};
    if (text == "cuda" || text == "gpu")
        return {DevicePreference::Cuda, 0};
    for (const char *prefix : {"cuda:", "gpu:"}) {
        const std::string p(prefix);
        if (text.rfind(p, 0) != 0)
            continue;
        const std::string digits = text.substr(p.size());
        int index = -1;
        const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
        if (!digits.empty() && err == std::errc() && end == digits.data() + digits.size() && index >= 0 && index < 1024)
            return {DevicePreference::Cuda, index};
    }
    throw LatheError("unknown device '" + text + "'", "use auto, cpu, cuda or cuda:N (lathe-cli devices lists the GPUs)");
}

std::string DeviceChoice::text() const {
    switch (preference) {
    case DevicePreference::Auto: return "auto";
    case DevicePreference::Cpu: return "cpu";
    case DevicePreference::Cuda: return "cuda:" + std::to_string(index);
    }
    return "auto";
}

void registerGpuPlatform(const GpuPlatform *platform) { g_platform = platform; }

bool gpuBackendCompiled(std::string *where) {
    if (g_platform && !g_fromPlugin) {
        if (where)
            *where = "linked in";
        return true;
    }
    // Found, not loaded: loading maps the CUDA libraries, which only asking for the devices should cost.
    const std::vector<std::filesystem::path> found = pluginCandidates();
    if (where)
        *where = found.empty() ? std::string(kNoPlugin) : found.front().string();
    return !found.empty();
}

std::vector<GpuSelfCheck> runGpuSelfChecks(const std::string &sourceDir) {
    const GpuPlugin &p = gpuPlugin();
    using Checks = void (*)(const std::string *, std::vector<GpuSelfCheck> *);
    auto checks = p.handle ? reinterpret_cast<Checks>(dlsym(p.handle, "lathe_gpu_self_checks")) : nullptr;
    if (!checks)
        throw LatheError("no GPU backend: " + p.where, "build with the CUDA toolkit installed, and keep " LATHE_GPU_PLUGIN_NAME
                                                       " beside lathe-cli");
    std::vector<GpuSelfCheck> out;
    checks(&sourceDir, &out);
    return out;
}

const std::vector<DeviceInfo> &gpuDevices(std::string *whyNone) {
    static std::string why;
    static const std::vector<DeviceInfo> devices = [] {
        // Without the NVIDIA driver there is no GPU to find: say so without loading the plugin and the CUDA
        // libraries (a CPU machine's `--device auto` stays small). A plugin named by $LATHE_GPU_PLUGIN is loaded
        // and asked regardless (the emulated device of the tests needs no driver; a real one says it has none).
        if (!g_platform && !std::getenv("LATHE_GPU_PLUGIN")) {
            void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
            if (!driver) {
                why = gpuBackendCompiled() ? "no NVIDIA driver (libcuda.so.1 not found)" : kNoPlugin;
                return std::vector<DeviceInfo>{};
            }
            dlclose(driver);
        }
        if (!platform()) {
            why = gpuPlugin().where;
            return std::vector<DeviceInfo>{};
        }
        std::vector<DeviceInfo> d = g_platform->devices(&why);
        return d;
    }();
    if (whyNone)
        *whyNone = devices.empty() ? why : std::string();
    return devices;
}

bool gpuUsable() { return !gpuDevices().empty(); }

std::unique_ptr<ComputeBackend> makeCpuBackend() { return std::make_unique<CpuBackend>(); }

std::unique_ptr<ComputeBackend> createBackend(const DeviceChoice &choice, std::string *note) {
    if (choice.preference == DevicePreference::Cpu)
        return makeCpuBackend();
    std::string why;
    const std::vector<DeviceInfo> &gpus = gpuDevices(&why);
    if (gpus.empty()) {
        if (choice.preference == DevicePreference::Cuda)
            throw LatheError("no usable CUDA device: " + why, "run with --device cpu");
        if (note)
            *note = "using the CPU: " + why;
        return makeCpuBackend();
    }
    if (choice.index >= int(gpus.size())) {
        std::string list;
        for (const DeviceInfo &d : gpus)
            list += (list.empty() ? "" : ", ") + d.label();
        throw LatheError("there is no GPU " + choice.text() + " here", "the GPUs: " + list);
    }
    return platform()->backend(choice.index);
}

} // namespace lathe
