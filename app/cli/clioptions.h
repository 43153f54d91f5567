#pragma once

#include "base/clock.h" // steadySeconds(), for the timings the subcommands print

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lathe::cli {

// Minimal "--flag", "--key value" / "--key=value" and positional argument parser for the subcommands.
class CliOptions {
public:
    // `valued` lists the options that take a value; `flags` those that do not. Unknown options are an error.
    CliOptions(int argc, char **argv, int first, const std::vector<std::string> &valued,
               const std::vector<std::string> &flags);
    bool ok() const { return m_error.empty(); }
    const std::string &error() const { return m_error; }
    bool flag(const std::string &name) const { return m_flags.count(name) > 0; }
    std::optional<std::string> value(const std::string &name) const;
    // The option as an integer in [min, max], `fallback` when absent; LatheError naming the option and the range
    // when it is not a whole number or out of range.
    int64_t integer(const std::string &name, int64_t fallback, int64_t min = INT64_MIN, int64_t max = INT64_MAX) const;
    // The option as a finite number in [min, max] (NaN and infinities refused), `fallback` when absent.
    double number(const std::string &name, double fallback, double min, double max) const;
    const std::vector<std::string> &positional() const { return m_positional; }

private:
    std::map<std::string, std::string> m_values;
    std::map<std::string, bool> m_flags;
    std::vector<std::string> m_positional;
    std::string m_error;
};


// Shared by the subcommands.
int runInspect(int argc, char **argv);
int runConvert(int argc, char **argv);
int runDevices(int argc, char **argv);
int runEval(int argc, char **argv);
int runGenerate(int argc, char **argv);
int runBench(int argc, char **argv);
int runAnalyze(int argc, char **argv);
int runTokenize(int argc, char **argv);
int runCompress(int argc, char **argv);
int runMethods(int argc, char **argv);
int runGrad(int argc, char **argv);
int runTrain(int argc, char **argv);
int runCheckGpu(int argc, char **argv);
int runSensitivity(int argc, char **argv);

} // namespace lathe::cli
