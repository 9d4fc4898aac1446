// Tests of cli/completion.h through the binary: `ckptbridge completion bash|zsh` prints a script
// the shell accepts and that completes subcommands, options and option values; an unknown
// command names itself and lists the commands.
#include <sys/wait.h>

#include <cstdio>

#include "test_util.h"

namespace ckb {
namespace {

using test::run_cli;

// Runs `cmd` under /bin/sh; stdout and the exit status.
std::pair<int, std::string> shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {-1, ""};
  char buf[4096];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

const char* const kCommands[] = {"inspect", "convert", "plan", "diff", "merge-lora", "adapt", "completion"};

class Completion : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = run_cli("completion bash");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    bash_ = r.out;
    test::write_file(tmp_ / "ckb.bash", bash_);
  }
  // What the bash completion function proposes for the command line `words` (the last word
  // is the one being completed), one per line, as bash would after `eval`.
  std::string complete(const std::string& words) {
    const std::string script = ". '" + tmp_ / "ckb.bash" + "'; COMP_WORDS=(" + words +
                               "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _ckptbridge; printf '%s\\n' \"${COMPREPLY[@]}\"";
    test::write_file(tmp_ / "run.bash", script);
    auto [rc, out] = shell("bash '" + tmp_ / "run.bash" + "'");
    EXPECT_EQ(rc, 0) << words;
    return out;
  }
  test::TempDir tmp_;
  std::string bash_;
};

TEST_F(Completion, BashScriptIsValidAndNamesEveryCommand) {
  auto [rc, out] = shell("bash -n '" + tmp_ / "ckb.bash" + "' 2>&1");
  EXPECT_EQ(rc, 0) << out;
  for (const char* c : kCommands) EXPECT_NE(bash_.find(c), std::string::npos) << c;
  EXPECT_NE(bash_.find("--src-step"), std::string::npos);
  EXPECT_NE(bash_.find("complete -o default -F _ckptbridge ckptbridge"), std::string::npos);
}

TEST_F(Completion, BashCompletesCommandsOptionsAndValues) {
  EXPECT_EQ(complete("ckptbridge co"), "convert\ncompletion\n");
  EXPECT_EQ(complete("ckptbridge m"), "merge-lora\n");
  EXPECT_EQ(complete("ckptbridge convert in.pt --to p"), "pt\npytorch\npth\n");
  EXPECT_EQ(complete("ckptbridge convert in.pt --to s"), "safetensors\n");
  EXPECT_EQ(complete("ckptbridge convert in.pt --dtype bf"), "bf16\nbfloat16\n");
  EXPECT_EQ(complete("ckptbridge convert in.pt --src-st"), "--src-step\n");
  EXPECT_EQ(complete("ckptbridge diff a b --ig"), "--ignore-dtype\n");
  EXPECT_EQ(complete("ckptbridge diff a b --ul"), "--ulp\n");
  EXPECT_EQ(complete("ckptbridge merge-lora x --to fl"), "flax\n");
  EXPECT_EQ(complete("ckptbridge completion ''"), "bash\nzsh\n");
  // A value list from the option's own check (adapt's target layout, Orbax's zarr version).
  EXPECT_EQ(complete("ckptbridge adapt x --layout ''"), "nnx\nlinen\nauto\n");
  EXPECT_EQ(complete("ckptbridge convert x --zarr-version ''"), "2\n3\n");
  // Nothing proposed for a path: bash falls back to file names (-o default).
  EXPECT_EQ(complete("ckptbridge convert in"), "\n");
}

TEST_F(Completion, ZshScriptIsValid) {
  auto r = run_cli("completion zsh");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  test::write_file(tmp_ / "_ckptbridge", r.out);
  auto [rc, out] = shell("zsh -n '" + tmp_ / "_ckptbridge" + "' 2>&1");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(r.out.rfind("#compdef ckptbridge\n", 0), 0u);
  for (const char* c : kCommands) EXPECT_NE(r.out.find(std::string("    ") + c + ")\n"), std::string::npos) << c;
  EXPECT_NE(r.out.find("'--to[output format"), std::string::npos);
  EXPECT_NE(r.out.find(":to:(orbax safetensors torch pt pytorch pth npz npy msgpack flax discard)'"), std::string::npos);
  EXPECT_NE(r.out.find("'--src-step["), std::string::npos);
  // A zsh with compinit loads it and registers the function for ckptbridge.
  auto [rc2, out2] = shell("zsh -f -c 'autoload -Uz compinit && compinit -u -D && source \"" + tmp_ / "_ckptbridge" +
                           "\" && print -r -- ${_comps[ckptbridge]}' 2>&1");
  EXPECT_EQ(rc2, 0) << out2;
  EXPECT_EQ(out2, "_ckptbridge\n");
}

TEST(Completion2, UnknownShellIsAUsageError) {
  auto r = run_cli("completion fish");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("fish not in {bash,zsh}"), std::string::npos) << r.err;
}

TEST(UnknownCommand, NamesItAndListsTheCommands) {
  auto r = run_cli("bogus x y");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("ckptbridge: unknown command 'bogus'\ncommands:\n", 0), 0u) << r.err;
  for (const char* c : kCommands) EXPECT_NE(r.err.find(std::string("\n  ") + c + " "), std::string::npos) << c;
  // Options before it do not hide it; a known command is not "unknown".
  EXPECT_EQ(run_cli("--bogus-flag bogus").err.rfind("ckptbridge: unknown command 'bogus'", 0), 0u);
  auto known = run_cli("inspect");
  EXPECT_EQ(known.exit_code, 1);
  EXPECT_EQ(known.err.find("unknown command"), std::string::npos) << known.err;
  // No command at all: CLI11's own message.
  auto none = run_cli("");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("A subcommand is required"), std::string::npos) << none.err;
}

}  // namespace
}  // namespace ckb
