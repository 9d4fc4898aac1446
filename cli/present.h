// What the writing commands print: notes and a one-line summary on stderr, the JSON report
// in a file or on stdout, the plan of a --dry-run, and the ledger table of `plan`.
#pragma once

#include <ostream>

#include "cli/options.h"
#include "engine/api.h"

namespace ckb::cli {

// Runs (or with --dry-run, plans) the job and presents the outcome. Exit status: 0, or 2
// when the plan has problems or a check after writing failed.
int run_and_report(const engine::Job& job, const CommonRun& c, const std::string& verb);

// The ledger as a table: targets with their rule and sources, dropped sources, totals, problems.
void print_ledger(std::ostream& out, const engine::Report& r);

// A report note on stderr: "note: TEXT" unless `quiet`; one starting with "warning:" as it
// is, always.
void print_note(const std::string& note, bool quiet);

// --report FILE / - ; IoError naming the file when it cannot be written.
void write_report(const std::string& path, const engine::Report& r);

}  // namespace ckb::cli
