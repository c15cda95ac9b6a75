"""rota watch: a task per debounced burst of file changes, with the paths in ROTA_CHANGED."""

from conftest import wait_for


def watch_tasks(rota):
    return [t for t in rota.json("list") if t["labels"].get("watch")]


def test_a_burst_of_writes_fires_once_with_the_changed_paths(rota, tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    rota.ok("watch", "add", "py", "--path", str(tree), "--glob", "*.py", "--debounce", "400ms",
            "--", "sh", "-c", f'printf "%s" "$ROTA_CHANGED" > {out}/$ROTA_TASK_ID')
    # One burst: many writes to two matching files (one in a subdirectory) and one that does
    # not match. Each write lands within the debounce of the one before.
    for i in range(10):
        with open(tree / "a.py", "a") as f:
            f.write(f"x = {i}\n")
        (tree / "pkg" / "b.py").write_text(f"y = {i}\n")
        (tree / "notes.txt").write_text(str(i))
    tasks = wait_for(lambda: [t for t in watch_tasks(rota) if t["state"] == "succeeded"],
                     message="the watch's task")
    assert len(tasks) == 1
    changed = (out / str(tasks[0]["id"])).read_text().split("\n")
    assert sorted(changed) == [str(tree / "a.py"), str(tree / "pkg" / "b.py")]
    listed = rota.json("watch", "list")
    assert [(w["name"], w["fired"]) for w in listed] == [("py", 1)]

    # A second burst is a second task.
    (tree / "c.py").write_text("z = 1\n")
    wait_for(lambda: len([t for t in watch_tasks(rota) if t["state"] == "succeeded"]) == 2,
             message="the second burst's task")
    assert len(watch_tasks(rota)) == 2


def test_a_new_subdirectory_is_watched(rota, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    rota.ok("watch", "add", "all", "--path", str(tree), "--debounce", "100ms", "--", "true")
    (tree / "new").mkdir()
    (tree / "new" / "file").write_text("1")
    # The file was written right after its directory was made, before inotify could watch the
    # directory: the daemon must see it anyway (it scans a directory it starts watching).
    task = wait_for(lambda: watch_tasks(rota), message="a task for the file in the new directory")
    assert len(task) == 1


def test_watches_come_back_after_a_restart_and_can_be_removed(rota, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    rota.ok("watch", "add", "w", "--path", str(tree), "--debounce", "100ms", "--", "true")
    rota.stop()
    rota.start()
    assert [w["name"] for w in rota.json("watch", "list")] == ["w"]
    (tree / "f").write_text("1")
    wait_for(lambda: watch_tasks(rota), message="a task after the restart")
    rota.ok("watch", "remove", "w")
    assert rota.json("watch", "list") == []
    r = rota.run("watch", "remove", "w")
    assert r.returncode == 1 and "no watch named" in r.stderr


def test_bad_watches_are_refused(rota, tmp_path):
    r = rota.run("watch", "add", "w", "--path", str(tmp_path / "missing"), "--", "true")
    assert r.returncode == 2
    assert "is not a directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = rota.run("watch", "add", "w", "--path", str(tmp_path), "--debounce", "soon", "--", "true")
    assert r.returncode == 2
    assert rota.json("watch", "list") == []
