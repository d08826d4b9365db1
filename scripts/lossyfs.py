#!/usr/bin/env python3
"""lossyfs: a FUSE file system that forgets, at a power cut, everything that was not fsynced.

    lossyfs.py [--early-writeback P --seed S] BACKING MOUNTPOINT
    lossyfs.py --check            (exits 0 if fusepy and libfuse 2 are installed)

Why a FUSE file system: the fault harness kills members with SIGKILL, which keeps the kernel's page cache, so
everything a member wrote survives whether or not it called fsync; fsync ordering is never tested. A real power cut
loses what is only in memory. This kernel has no device-mapper (dm-flakey, dm-log-writes) and no way to drop one
file system's page cache without unmounting it, so the file system itself keeps what is not yet durable in memory:
in this process. A power cut is `kill -9` of the member and then of this process, followed by a lazy unmount: the
kernel's caches of the mount go with it, this process's memory (every unsynced write) is gone, and the next mount
starts from BACKING, which only ever receives what was made durable. Nothing else has to cooperate, so the cut is
exactly as abrupt as a real one.

The durability model (stricter than ext4's, as POSIX allows; ALICE's and LazyFS's "what survives" model for data,
plus lost directory operations):
  * File data and size: a write or truncate is durable once fsync or fdatasync returns on that file (through any
    descriptor). Until then it lives in this process's memory (4 KiB dirty pages) and is lost at a cut: the file
    comes back with its content and size as of its last fsync. By default nothing is written back early: a cut
    drops every unsynced page.
  * With `--early-writeback P --seed S`, a disk that also writes some pages back before anyone asked, in no order:
    after each write, with probability P, one of the file's unsynced pages (chosen by the seeded generator) goes to
    BACKING at once, and one time in four only its first 512-byte sectors (a torn page: the rest of the page keeps
    what was there, sectors themselves are atomic, as SQLite's powersafe-overwrite assumption and real disks have
    it). The file's current view is unchanged; after a cut it comes back with its last synced content plus those
    pages, its size grown to cover them: a log's tail can then hold a later record without an earlier one, half a
    record, or zeros in between, which is what torn-tail repair has to handle.
  * Directory entries: create, mkdir, unlink, rmdir and rename change a directory's durable entries only once that
    directory is fsynced (`fsync` on a descriptor of the directory). A file created and fsynced in a directory that
    is never fsynced disappears at a cut; a file renamed over another reverts to the old one; a rename between two
    directories is durable in each at its own fsync. A new directory's own entries start empty.
  * Not durable at all, not modelled: times, owners. Modes are recorded with the entry or the file's fsync.
  * close(), rename() and process exit make nothing durable.

BACKING holds the durable state: `objects/<id>` (a file's content as of its last fsync) and `manifest.json` (every
directory's durable entries, replaced atomically on each directory fsync). The backing writes are not themselves
fsynced: the machine running the harness does not lose power, only the simulated one does.

A virtual read-only file `/.lossyfs-unsynced` (not listed) reports what a cut now would drop, as JSON, so that the
harness can show the cuts lose something.

Single-threaded (fusepy's `nothreads`): one request at a time, so no locks. No `lock` operation: fcntl byte-range
locks (SQLite's) and flock then stay in the kernel, which is right for one machine. No direct_io: SQLite maps its
`-shm` file shared, which FUSE only allows through the page cache; `attr_timeout=0` and `entry_timeout=0` keep the
kernel from caching sizes and names, and without `keep_cache` it drops a file's cached pages at every open.
"""

import errno
import json
import os
import random
import stat
import sys
import time

try:  # Debian's python3-fusepy names the module `fusepy`; PyPI's fusepy names it `fuse`.
    from fusepy import FUSE, FuseOSError
except ImportError:
    from fuse import FUSE, FuseOSError

PAGE = 4096
STATS_NAME = ".lossyfs-unsynced"


class Node:
    __slots__ = ("id", "is_dir", "mode", "entries", "size", "valid", "dirty", "mtime", "ctime", "links")

    def __init__(self, node_id, is_dir, mode):
        self.id = node_id
        self.is_dir = is_dir
        self.mode = mode
        self.entries = {} if is_dir else None  # name -> Node (the current view)
        self.size = 0
        # Bytes of objects/<id> that still belong to the file (a truncate below them since the last fsync cuts
        # this); beyond it, pages not in `dirty` read as zeros.
        self.valid = 0
        self.dirty = {}  # page number -> bytearray(PAGE): written since the last fsync
        now = time.time()
        self.mtime = now
        self.ctime = now
        self.links = 0


class LossyFS:
    def __init__(self, backing, early_writeback=0.0, seed=0):
        self.backing = backing
        self.early_writeback = early_writeback
        self.random = random.Random(seed)
        self.early_pages = 0
        self.objects = os.path.join(backing, "objects")
        os.makedirs(self.objects, exist_ok=True)
        self.manifest_path = os.path.join(backing, "manifest.json")
        self.handles = {}  # fh -> Node
        self.next_fh = 1
        self.object_fds = {}  # node id -> fd of objects/<id>
        self.unsynced_dirs = set()  # ids of directories whose entries changed since their last fsync
        self.load()

    # MARK: durable state

    def load(self):
        """Builds the namespace from the manifest: what survived the last cut."""
        if os.path.exists(self.manifest_path):
            with open(self.manifest_path) as f:
                manifest = json.load(f)
        else:
            manifest = {"dirs": {"1": {}}, "modes": {"1": stat.S_IFDIR | 0o755}}
        self.manifest = manifest
        dirs = manifest["dirs"]
        modes = manifest["modes"]
        built = {}

        def build(node_id, is_dir):
            if node_id in built:
                return built[node_id]
            node = Node(node_id, is_dir, modes.get(str(node_id), (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o644)))
            built[node_id] = node
            if is_dir:
                for name, (kind, child) in dirs.get(str(node_id), {}).items():
                    c = build(child, kind == "d")
                    if c.is_dir == (kind == "d") and not (c.is_dir and c.links > 0):
                        node.entries[name] = c
                        c.links += 1
            else:
                path = self.object_path(node_id)
                node.size = node.valid = os.path.getsize(path) if os.path.exists(path) else 0
            return node

        self.root = build(1, True)
        self.root.links = 1
        reachable = set(built)
        discarded = 0
        for name in os.listdir(self.objects):
            if name.isdigit() and int(name) not in reachable:
                os.unlink(os.path.join(self.objects, name))
                discarded += 1
        self.next_id = max([int(n) for n in os.listdir(self.objects) if n.isdigit()] + list(reachable)) + 1
        # Durable entries of directories no longer reachable are forgotten too.
        manifest["dirs"] = {k: v for k, v in dirs.items() if int(k) in reachable}
        manifest["modes"] = {k: v for k, v in modes.items() if int(k) in reachable}
        files = sum(1 for n in built.values() if not n.is_dir)
        print(f"lossyfs: {files} files, {len(built) - files} directories survived; "
              f"{discarded} unreferenced objects discarded", file=sys.stderr, flush=True)

    def object_path(self, node_id):
        return os.path.join(self.objects, str(node_id))

    def object_fd(self, node):
        fd = self.object_fds.get(node.id)
        if fd is None:
            fd = os.open(self.object_path(node.id), os.O_RDWR | os.O_CREAT, 0o600)
            self.object_fds[node.id] = fd
        return fd

    def write_manifest(self):
        temporary = self.manifest_path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(self.manifest, f)
        os.replace(temporary, self.manifest_path)

    # MARK: file content

    def page(self, node, number):
        """The current content of one page (a copy unless dirty)."""
        dirty = node.dirty.get(number)
        if dirty is not None:
            return dirty
        start = number * PAGE
        data = bytearray(PAGE)
        if start < node.valid:
            chunk = os.pread(self.object_fd(node), min(PAGE, node.valid - start), start)
            data[: len(chunk)] = chunk
        return data

    def read_range(self, node, offset, size):
        end = min(offset + size, node.size)
        if offset >= end:
            return b""
        out = bytearray()
        position = offset
        while position < end:
            number = position // PAGE
            page_end = min((number + 1) * PAGE, end)
            if number not in node.dirty and page_end <= node.valid:
                # A run of clean pages within the durable content: one pread.
                run_end = position
                while run_end < end and (run_end // PAGE) not in node.dirty and run_end < node.valid:
                    run_end = min((run_end // PAGE + 1) * PAGE, end, node.valid)
                out += os.pread(self.object_fd(node), run_end - position, position)
                position = run_end
                continue
            data = self.page(node, number)
            out += data[position - number * PAGE : page_end - number * PAGE]
            position = page_end
        return bytes(out)

    def write_range(self, node, offset, data):
        position = 0
        while position < len(data):
            at = offset + position
            number = at // PAGE
            within = at - number * PAGE
            count = min(PAGE - within, len(data) - position)
            chunk = data[position : position + count]
            if number not in node.dirty and number * PAGE >= node.valid and not any(chunk):
                pass  # zeros over a page that reads as zeros anyway (glibc's posix_fallocate emulation writes these)
            else:
                page = node.dirty.get(number)
                if page is None:
                    page = self.page(node, number)
                    node.dirty[number] = page
                page[within : within + count] = chunk
            position += count
        node.size = max(node.size, offset + len(data))
        node.mtime = time.time()

    def truncate_node(self, node, length):
        if length < node.size:
            node.valid = min(node.valid, length)
            last = length // PAGE
            for number in [n for n in node.dirty if n > last or (n == last and length % PAGE == 0)]:
                del node.dirty[number]
            page = node.dirty.get(last)
            if page is not None:
                page[length % PAGE :] = bytes(PAGE - length % PAGE)
        node.size = length
        node.mtime = time.time()

    def sync_node(self, node):
        """fsync: the file's content and size become what a cut leaves."""
        fd = self.object_fd(node)
        if os.fstat(fd).st_size > node.valid:
            os.ftruncate(fd, node.valid)
        for number in sorted(node.dirty):
            start = number * PAGE
            if start < node.size:
                os.pwrite(fd, bytes(node.dirty[number][: min(PAGE, node.size - start)]), start)
        os.ftruncate(fd, node.size)
        node.dirty.clear()
        node.valid = node.size
        self.manifest["modes"][str(node.id)] = node.mode

    def sync_directory(self, node):
        self.manifest["dirs"][str(node.id)] = {
            name: ("d" if c.is_dir else "f", c.id) for name, c in node.entries.items()
        }
        for c in node.entries.values():
            self.manifest["modes"][str(c.id)] = c.mode
            if c.is_dir:
                self.manifest["dirs"].setdefault(str(c.id), {})
        self.unsynced_dirs.discard(node.id)
        self.write_manifest()

    # MARK: paths

    def lookup(self, path):
        node = self.root
        for part in path.split("/"):
            if not part:
                continue
            if not node.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            node = node.entries.get(part)
            if node is None:
                raise FuseOSError(errno.ENOENT)
        return node

    def parent(self, path):
        head, name = os.path.split(path.rstrip("/"))
        directory = self.lookup(head or "/")
        if not directory.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        return directory, name

    def new_node(self, is_dir, mode):
        node = Node(self.next_id, is_dir, mode)
        self.next_id += 1
        return node

    def stats_text(self):
        files = [n for n in self.handles.values()]
        dirty_files = 0
        dirty_bytes = 0
        seen = set()

        def walk(node):
            nonlocal dirty_files, dirty_bytes
            if node.id in seen:
                return
            seen.add(node.id)
            if node.is_dir:
                for c in node.entries.values():
                    walk(c)
            elif node.dirty or node.size != node.valid:
                dirty_files += 1
                dirty_bytes += len(node.dirty) * PAGE + max(0, node.size - node.valid - len(node.dirty) * PAGE)

        walk(self.root)
        for n in files:
            walk(n)
        return json.dumps({
            "unsyncedFiles": dirty_files, "unsyncedBytes": dirty_bytes,
            "unsyncedDirectories": len(self.unsynced_dirs), "pagesWrittenEarly": self.early_pages,
        }).encode() + b"\n"

    # MARK: FUSE operations (fusepy installs those the object has an attribute for, then calls the object with the
    # operation's name)

    OPERATIONS = {
        "init", "destroy", "getattr", "statfs", "readdir", "opendir", "releasedir", "fsyncdir", "mkdir", "rmdir",
        "create", "open", "release", "flush", "read", "write", "truncate", "fsync", "unlink", "rename", "chmod",
        "chown", "utimens", "access",
    }
    # Operations on a descriptor of an unlinked file come without a path (see `hard_remove` in main).
    flag_nullpath_ok = True

    def __call__(self, op, *args):
        method = getattr(self, op, None) if op in self.OPERATIONS else None
        if method is None:
            raise FuseOSError(errno.ENOSYS)
        try:
            return method(*args)
        except FuseOSError:
            raise
        except OSError as error:
            print(f"lossyfs: {op}{args[:1]}: {error}", file=sys.stderr, flush=True)
            raise FuseOSError(error.errno or errno.EIO)

    def init(self, path):
        # The mount is live: tell whoever started us (it waits for this line, not for time to pass).
        print("lossyfs: mounted", flush=True)

    def destroy(self, path):
        pass

    def getattr(self, path, fh=None):
        if path == "/" + STATS_NAME:
            self.stats = self.stats_text()
            return {"st_mode": stat.S_IFREG | 0o444, "st_size": len(self.stats), "st_nlink": 1}
        node = self.handles[fh] if fh is not None and fh in self.handles else self.lookup(path)
        return {
            "st_mode": node.mode, "st_size": node.size if not node.is_dir else 4096,
            "st_nlink": max(1, node.links) + (1 if node.is_dir else 0), "st_uid": 0, "st_gid": 0,
            "st_mtime": node.mtime, "st_ctime": node.ctime, "st_atime": node.mtime,
            "st_blocks": (node.size + 511) // 512, "st_blksize": PAGE, "st_ino": node.id,
        }

    def statfs(self, path):
        return {"f_bsize": PAGE, "f_frsize": PAGE, "f_blocks": 1 << 24, "f_bfree": 1 << 23, "f_bavail": 1 << 23,
                "f_files": 1 << 20, "f_ffree": 1 << 19, "f_namemax": 255}

    def readdir(self, path, fh):
        node = self.lookup(path)
        return [".", ".."] + list(node.entries)

    def opendir(self, path):
        if not self.lookup(path).is_dir:
            raise FuseOSError(errno.ENOTDIR)
        return 0

    def releasedir(self, path, fh):
        return 0

    def fsyncdir(self, path, datasync, fh):
        self.sync_directory(self.lookup(path))
        return 0

    def mkdir(self, path, mode):
        directory, name = self.parent(path)
        if name in directory.entries:
            raise FuseOSError(errno.EEXIST)
        node = self.new_node(True, stat.S_IFDIR | (mode & 0o7777))
        node.links = 1
        directory.entries[name] = node
        self.unsynced_dirs.add(directory.id)
        return 0

    def rmdir(self, path):
        directory, name = self.parent(path)
        node = directory.entries.get(name)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if not node.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        if node.entries:
            raise FuseOSError(errno.ENOTEMPTY)
        del directory.entries[name]
        node.links -= 1
        self.unsynced_dirs.add(directory.id)
        return 0

    def create(self, path, mode, fi=None):
        directory, name = self.parent(path)
        node = directory.entries.get(name)
        if node is None:
            node = self.new_node(False, stat.S_IFREG | (mode & 0o7777))
            node.links = 1
            directory.entries[name] = node
            self.unsynced_dirs.add(directory.id)
        return self.open_handle(node)

    def open_handle(self, node):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    def open(self, path, flags):
        if path == "/" + STATS_NAME:
            return 0
        node = self.lookup(path)
        if node.is_dir:
            raise FuseOSError(errno.EISDIR)
        if flags & os.O_TRUNC:
            self.truncate_node(node, 0)
        return self.open_handle(node)

    def release(self, path, fh):
        node = self.handles.pop(fh, None)
        if node is not None and node.links == 0 and node not in self.handles.values():
            fd = self.object_fds.pop(node.id, None)
            if fd is not None:
                os.close(fd)
        return 0

    def flush(self, path, fh):
        return 0  # close() makes nothing durable

    def read(self, path, size, offset, fh):
        if path == "/" + STATS_NAME:
            return self.stats[offset : offset + size]
        node = self.handles.get(fh) or self.lookup(path)
        return self.read_range(node, offset, size)

    def write(self, path, data, offset, fh):
        node = self.handles.get(fh) or self.lookup(path)
        self.write_range(node, offset, data)
        if self.early_writeback > 0 and node.dirty and self.random.random() < self.early_writeback:
            self.write_back_early(node)
        return len(data)

    def write_back_early(self, node):
        """The disk writes one unsynced page of `node` now, whole or torn; nothing else changes."""
        number = self.random.choice(sorted(node.dirty))
        start = number * PAGE
        length = min(PAGE, max(0, node.size - start))
        if length == 0:
            return
        if self.random.random() < 0.25:
            length = min(length, 512 * self.random.randint(1, PAGE // 512 - 1))
        os.pwrite(self.object_fd(node), bytes(node.dirty[number][:length]), start)
        self.early_pages += 1

    def truncate(self, path, length, fh=None):
        node = self.handles.get(fh) if fh is not None else None
        self.truncate_node(node or self.lookup(path), length)
        return 0

    def fsync(self, path, datasync, fh):
        node = self.handles.get(fh) or self.lookup(path)
        if not node.is_dir:
            self.sync_node(node)
        return 0

    def unlink(self, path):
        directory, name = self.parent(path)
        node = directory.entries.get(name)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if node.is_dir:
            raise FuseOSError(errno.EISDIR)
        del directory.entries[name]
        node.links -= 1
        self.unsynced_dirs.add(directory.id)
        return 0

    def rename(self, old, new):
        source, old_name = self.parent(old)
        target, new_name = self.parent(new)
        node = source.entries.get(old_name)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        replaced = target.entries.get(new_name)
        if replaced is node:
            return 0
        if replaced is not None:
            if replaced.is_dir != node.is_dir:
                raise FuseOSError(errno.EISDIR if replaced.is_dir else errno.ENOTDIR)
            if replaced.is_dir and replaced.entries:
                raise FuseOSError(errno.ENOTEMPTY)
            replaced.links -= 1
        del source.entries[old_name]
        target.entries[new_name] = node
        self.unsynced_dirs.update((source.id, target.id))
        return 0

    def chmod(self, path, mode):
        node = self.lookup(path)
        node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
        node.ctime = time.time()
        return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        node = self.lookup(path)
        node.mtime = times[1] if times else time.time()
        return 0

    def access(self, path, amode):
        self.lookup(path)
        return 0


def main():
    if sys.argv[1:] == ["--check"]:
        return  # the imports above worked: fusepy and libfuse 2 are there
    arguments = sys.argv[1:]
    early_writeback, seed = 0.0, 0
    while arguments and arguments[0].startswith("--") and len(arguments) > 1:
        flag, value = arguments[0], arguments[1]
        if flag == "--early-writeback":
            early_writeback = float(value)
        elif flag == "--seed":
            seed = int(value)
        else:
            break
        arguments = arguments[2:]
    if len(arguments) != 2 or not 0 <= early_writeback <= 1:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        sys.exit(2)
    backing, mountpoint = arguments
    os.makedirs(backing, exist_ok=True)
    os.makedirs(mountpoint, exist_ok=True)
    fs = LossyFS(backing, early_writeback, seed)
    if early_writeback > 0:
        print(f"lossyfs: early write-back of unsynced pages with probability {early_writeback}, seed {seed}",
              file=sys.stderr, flush=True)
    # hard_remove: libfuse would otherwise rename an open file that is unlinked to `.fuse_hidden*` in its directory,
    # an entry a directory fsync would then make durable.
    FUSE(fs, mountpoint, foreground=True, nothreads=True, fsname="lossyfs", subtype="lossyfs",
         big_writes=True, max_write=131072, max_read=131072, attr_timeout=0, entry_timeout=0,
         negative_timeout=0, hard_remove=True)


if __name__ == "__main__":
    main()
