#!/usr/bin/env python3
"""The soak's checker (tests/soak.sh), independent of orq's code: it reads only what the soak's
generator wrote down and what the CLI printed.

    soak_check.py LEDGER GATHERED JOBS

LEDGER: one line per job the broker accepted: KEY KIND EXPECTED JOB, where EXPECTED lists each
task's STATUS=VALUE in order, joined by commas (VALUE: the result, or a shell task's stdout
without its newline; empty when not checked). GATHERED: `orq gather --json` of every job.
JOBS: `orq jobs --json`. Prints a report and exits 0 only when no task is lost, duplicated,
wrong or stuck.
"""
import json
import sys


def value_of(line):
    if "stdout" in line:
        return line["stdout"].rstrip("\n")
    result = line.get("result")
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            pass
    return str(result)


def main(ledger_path, gathered_path, jobs_path):
    ledger = {}  # job id -> (key, kind, [(status, value)])
    for line in open(ledger_path):
        key, kind, expected, job = line.split()
        tasks = [tuple(t.split("=", 1)) for t in expected.split(",")]
        if job in ledger:
            print(f"duplicated: {job} was returned for both {ledger[job][0]} and {key}")
        ledger[job] = (key, kind, tasks)

    seen = {}  # task id -> gathered line
    duplicated, lost, wrong, stuck, unexpected = [], [], [], [], []
    for text in open(gathered_path):
        text = text.strip()
        if not text.startswith("{"):
            continue
        line = json.loads(text)
        if line["id"] in seen:
            duplicated.append(line["id"] + " (twice in the gathered results)")
        seen[line["id"]] = line

    broker_jobs = {}
    for text in open(jobs_path):
        text = text.strip()
        if text.startswith("{"):
            job = json.loads(text)
            broker_jobs[job["id"]] = job
    for job in broker_jobs:
        if job not in ledger:
            unexpected.append(f"{job}: a job the generator was never given (a second job for one key?)")

    for job, (key, kind, tasks) in ledger.items():
        if job not in broker_jobs:
            lost.append(f"{job} ({kind}, {key}): the broker does not have it")
            continue
        if not broker_jobs[job].get("finished"):
            stuck.append(f"{job} ({kind}): not finished")
            continue
        for index, (status, value) in enumerate(tasks):
            task = f"{job}.{index}"
            line = seen.get(task)
            if line is None:
                lost.append(f"{task} ({kind}): no result")
            elif line["status"] != status:
                wrong.append(f"{task} ({kind}): {line['status']} ({line.get('error', '')}),"
                             f" expected {status}")
            elif value and value_of(line) != value:
                wrong.append(f"{task} ({kind}): {value_of(line)!r}, expected {value!r}")

    kinds = {}
    for _, kind, tasks in ledger.values():
        kinds[kind] = kinds.get(kind, 0) + len(tasks)
    attempts = sum(line.get("attempts", 1) for line in seen.values())
    print(f"soak check: {len(ledger)} jobs, {sum(kinds.values())} tasks "
          f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}), "
          f"{attempts} executions")
    for name, items in (("lost", lost), ("duplicated", duplicated + unexpected),
                        ("wrong", wrong), ("stuck", stuck)):
        print(f"  {name}: {len(items)}")
        for item in items[:20]:
            print(f"    {item}")
    return 0 if not (lost or duplicated or unexpected or wrong or stuck) else 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
