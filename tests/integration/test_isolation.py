"""--workdir temp and --worktree: a fresh directory per attempt, cleaned up afterwards."""

import os
import subprocess

from conftest import pid_alive, wait_for


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def make_repo(path):
    os.makedirs(path)
    git("init", "-q", cwd=path)
    with open(os.path.join(path, "README"), "w") as f:
        f.write("first\n")
    git("add", "README", cwd=path)
    git("commit", "-qm", "first", cwd=path)
    git("tag", "v1", cwd=path)
    with open(os.path.join(path, "README"), "w") as f:
        f.write("second\n")
    git("commit", "-qam", "second", cwd=path)
    return path


def worktrees(repo):
    out = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=repo, check=True,
                         capture_output=True, text=True).stdout
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def test_workdir_temp_is_fresh_and_removed(rota):
    ids = [rota.add("--workdir", "temp", "--shell", 'pwd; ls -A | wc -l; touch litter')
           for _ in range(2)]
    assert rota.wait(*ids) == 0
    dirs = []
    for i in ids:
        where, count = rota.log(i).split()
        assert count == "0"  # empty when the task starts
        assert not os.path.exists(where)  # and gone once it ended
        dirs.append(where)
    assert dirs[0] != dirs[1]


def test_worktree_runs_at_the_ref_and_is_removed(rota, tmp_path):
    repo = make_repo(str(tmp_path / "repo"))
    head = rota.add("--worktree", repo, "--", "cat", "README")
    tagged = rota.add("--worktree", repo, "--ref", "v1", "--shell", "cat README; pwd")
    assert rota.wait(head, tagged) == 0
    assert rota.log(head) == "second\n"
    readme, where = rota.log(tagged).split("\n")[:2]
    assert readme == "first"
    assert where.startswith(rota.home) and not os.path.exists(where)
    assert worktrees(repo) == [repo]


# Several agents on one repository: worktree tasks that start and end beside each other all
# get their worktree (git's add and remove of one repository do not mix: rota takes turns).
def test_many_worktree_tasks_on_one_repository_at_once(rota_home, tmp_path):
    rota = rota_home
    rota.start(workers=4)
    repo = make_repo(str(tmp_path / "repo"))
    ids = [int(x) for x in rota.ok("add", "--stdin", "--worktree", repo,
                                   input="cat README\n" * 60).split()]
    assert rota.wait(*ids) == 0, [rota.log(i) for i in ids if rota.show(i)["state"] != "succeeded"]
    assert {rota.log(i) for i in ids} == {"second\n"}
    assert worktrees(repo) == [repo]


def test_a_failed_worktree_is_kept_only_when_asked(rota, tmp_path):
    repo = make_repo(str(tmp_path / "repo"))
    kept = rota.add("--worktree", repo, "--keep-failed", "--shell", "echo wip > notes; exit 3")
    dropped = rota.add("--worktree", repo, "--", "false")
    assert rota.wait(kept, dropped) == 1
    assert "worktree is kept at" in rota.log(kept)
    [path] = [w for w in worktrees(repo) if w != repo]
    with open(os.path.join(path, "notes")) as f:
        assert f.read() == "wip\n"


def test_a_stale_worktree_left_by_a_killed_worker_is_pruned_before_the_retry(rota, tmp_path):
    repo = make_repo(str(tmp_path / "repo"))
    gate = tmp_path / "gate"
    task = rota.add("--worktree", repo, "--retries", "1", "--shell",
                    f'echo attempt $ROTA_ATTEMPT; [ -e {gate} ] || sleep 60')
    running = rota.wait_state(task, "running")
    [path] = wait_for(lambda: [w for w in worktrees(repo) if w != repo] or None,
                      message="the first attempt's worktree")
    # The worker dies with its task: the worktree stays behind, still registered with git.
    worker = next(w for w in rota.workers() if w["id"] == running["worker"])
    gate.write_text("")
    os.kill(worker["pid"], 9)
    wait_for(lambda: not pid_alive(worker["pid"]))
    done = rota.wait_state(task, "succeeded", "failed")
    assert done["state"] == "succeeded", rota.log(task)
    assert [a["outcome"] for a in done["attempt_history"]] == ["worker_lost", "succeeded"]
    log = rota.log(task)
    assert "pruning the stale worktree" in log and "attempt 2" in log
    assert worktrees(repo) == [repo] and not os.path.exists(path)


def test_bad_isolation_flags_are_refused(rota, tmp_path):
    r = rota.run("add", "--worktree", str(tmp_path), "--", "true")
    assert r.returncode == 2 and "is not a git repository" in r.stderr
    r = rota.run("add", "--workdir", "scratch", "--", "true")
    assert r.returncode == 2 and "--workdir" in r.stderr
    r = rota.run("add", "--ref", "main", "--", "true")
    assert r.returncode == 2 and "go with --worktree" in r.stderr
    assert rota.tasks() == []
