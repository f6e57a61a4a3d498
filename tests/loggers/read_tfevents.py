#!/usr/bin/env python3
"""Independent reader for the TensorBoard event files Blixt writes.

Usage: read_tfevents.py PATH_TO_loggers_test_tensorboard
       read_tfevents.py --dump EVENT_FILE

Runs `loggers_test_tensorboard --write TMPDIR` (the fixed run of that test)
and checks the event file with no Blixt code:
  1. TFRecord framing and both masked CRC32Cs (own table-driven CRC32C);
  2. every Event / Summary / hparams-plugin field, decoded with a minimal
     protobuf varint reader written here;
  3. if google.protobuf is importable: the records parse with real protobuf
     classes built from the TensorBoard schemas (event.proto, summary.proto,
     plugins/hparams/{api,plugin_data}.proto), equal the messages that
     torch.utils.tensorboard.summary.hparams() / scalar() build, and
     re-serialize to the same bytes (field layout);
  4. if TensorBoard is importable: its EventAccumulator reads the scalars;
  5. if torch.utils.tensorboard.SummaryWriter works: an event file it writes
     for the same scalars decodes to the same fields (wall times aside).
Parts 3-5 print "skipped" when their package is missing.
Exit 0 = all checks pass, 1 = a mismatch.
"""
import os
import struct
import subprocess
import sys
import tempfile

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what)


# ---- 1. CRC32C + framing -----------------------------------------------------
def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    with open(path, "rb") as fp:
        raw = fp.read()
    recs, off = [], 0
    while off < len(raw):
        check(off + 12 <= len(raw), "truncated header at %d" % off)
        (n,) = struct.unpack_from("<Q", raw, off)
        (hcrc,) = struct.unpack_from("<I", raw, off + 8)
        check(hcrc == masked(raw[off:off + 8]), "length CRC of record %d" % len(recs))
        data = raw[off + 12:off + 12 + n]
        check(len(data) == n, "truncated data in record %d" % len(recs))
        (dcrc,) = struct.unpack_from("<I", raw, off + 12 + n)
        check(dcrc == masked(data), "data CRC of record %d" % len(recs))
        recs.append(data)
        off += 12 + n + 4
    return recs


# ---- 2. minimal protobuf decoding ------------------------------------------------
def varint(buf, i):
    v, sh = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << sh
        sh += 7
        if not b & 0x80:
            return v, i


def fields(buf):
    """List of (field number, wire type, value): int for varint/fixed, bytes for len."""
    out, i = [], 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(buf, i)
        elif wire == 1:
            v = buf[i:i + 8]
            i += 8
        elif wire == 5:
            v = buf[i:i + 4]
            i += 4
        elif wire == 2:
            n, i = varint(buf, i)
            v = buf[i:i + n]
            i += n
        else:
            raise ValueError("wire type %d" % wire)
        out.append((num, wire, v))
    return out


def one(buf, num):
    got = [v for n, _, v in fields(buf) if n == num]
    return got[0] if got else None


def f64(b):
    return struct.unpack("<d", b)[0]


def f32(b):
    return struct.unpack("<f", b)[0]


def decode_event(data):
    """-> dict(wall_time, step, file_version, values=[(tag, simple_value|None, plugin, content)])"""
    ev = {"wall_time": None, "step": 0, "file_version": None, "values": []}
    for num, wire, v in fields(data):
        if num == 1:
            ev["wall_time"] = f64(v)
        elif num == 2:
            ev["step"] = v
        elif num == 3:
            ev["file_version"] = v.decode()
        elif num == 5:
            for n2, _, val in fields(v):
                assert n2 == 1
                tag, simple, plugin, content = "", None, None, None
                for n3, w3, x in fields(val):
                    if n3 == 1:
                        tag = x.decode()
                    elif n3 == 2:
                        simple = f32(x)
                    elif n3 == 9:
                        pd = one(x, 1)
                        plugin = one(pd, 1).decode()
                        content = one(pd, 2) or b""
                ev["values"].append((tag, simple, plugin, content))
    return ev


# What loggers_test_tensorboard --write logs (see write_run there).
HPARAMS = [("lr", "number", 0.01), ("name", "string", "mlp"), ("flag", "number", 1.0),
           ("nested/depth", "number", 3.0), ("none", "string", "None"), ("lst", "string", "[1, 2]")]
SCALARS = [("loss", 0.5, 0), ("loss", 0.25, 1), ("acc", 0.75, 1), ("val/x", 1.0 / 3.0, 10),
           ("loss", -2.5e-3, 1 << 40)]


def f32r(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_decoded(recs):
    check(len(recs) == 10, "10 records (got %d)" % len(recs))
    if len(recs) != 10:
        return
    evs = [decode_event(r) for r in recs]
    for i, e in enumerate(evs):
        check(e["wall_time"] is not None and e["wall_time"] > 1.5e9, "wall_time of event %d" % i)
    check(evs[0]["file_version"] == "brain.Event:2" and not evs[0]["values"], "file_version event")
    check(evs[1]["values"] == [("hp_metric", -1.0, None, None)] and evs[1]["step"] == 0,
          "hp_metric -1 at step 0")
    tags = ["_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"]
    for k, tag in enumerate(tags):
        vals = evs[2 + k]["values"]
        check(len(vals) == 1 and vals[0][0] == tag and vals[0][2] == "hparams", tag)
    # experiment: HParamsPluginData{experiment(2): {hparam_infos(4), metric_infos(5)}}
    exp = fields(evs[2]["values"][0][3])
    check([n for n, _, _ in exp] == [2], "experiment content has only field 2")
    infos = fields(exp[0][2])
    hps = [(one(v, 1).decode(), one(v, 4)) for n, _, v in infos if n == 4]
    want = [(k, 3 if t == "number" else 1) for k, t, _ in HPARAMS]
    check(hps == want, "hparam_infos %r" % hps)
    mts = [one(one(v, 1), 2).decode() for n, _, v in infos if n == 5]
    check(mts == ["hp_metric"], "metric_infos %r" % mts)
    # session_start_info: {hparams(1): map entries {key(1), Value(2)}}
    ssi = fields(evs[3]["values"][0][3])
    check([n for n, _, _ in ssi] == [3], "ssi content has only field 3")
    got = []
    for n, _, entry in fields(ssi[0][2]):
        key = one(entry, 1).decode()
        val = fields(one(entry, 2))
        kind = {2: "number", 3: "string"}[val[0][0]]
        x = f64(val[0][2]) if kind == "number" else val[0][2].decode()
        got.append((key, kind, x))
    check(got == HPARAMS, "session_start_info hparams %r" % got)
    sei = fields(evs[4]["values"][0][3])
    check(sei == [(4, 2, b"\x08\x01")], "session_end_info status SUCCESS")
    for k, (tag, v, step) in enumerate(SCALARS):
        e = evs[5 + k]
        check(e["values"] == [(tag, f32r(v), None, None)] and e["step"] == step,
              "scalar %s at %d: %r" % (tag, step, e))


# ---- 3. real protobuf classes ------------------------------------------------------
def proto_classes():
    from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2  # noqa: F401
    from google.protobuf import message_factory
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="blixt_tb_check.proto", package="tbcheck",
                                             syntax="proto3",
                                             dependency=["google/protobuf/struct.proto"])

    def msg(parent, name, flds, oneofs=()):
        m = parent.add(name=name)
        for o in oneofs:
            m.oneof_decl.add(name=o)
        for f in flds:
            fname, num, typ = f[0], f[1], f[2]
            tname = f[3] if len(f) > 3 else None
            rep = len(f) > 4 and f[4] == "repeated"
            oneof = f[5] if len(f) > 5 else None
            fd = m.field.add(name=fname, number=num, type=typ,
                             label=F.LABEL_REPEATED if rep else F.LABEL_OPTIONAL)
            if tname:
                fd.type_name = tname
            if oneof is not None:
                fd.oneof_index = oneof
        return m

    M, S, D, FL, I64, I32, B = (F.TYPE_MESSAGE, F.TYPE_STRING, F.TYPE_DOUBLE, F.TYPE_FLOAT,
                               F.TYPE_INT64, F.TYPE_INT32, F.TYPE_BYTES)
    mt = fdp.message_type
    # tensorboard/compat/proto/summary.proto (subset)
    sm = msg(mt, "SummaryMetadata", [("plugin_data", 1, M, ".tbcheck.SummaryMetadata.PluginData"),
                                      ("display_name", 2, S), ("summary_description", 3, S)])
    msg(sm.nested_type, "PluginData", [("plugin_name", 1, S), ("content", 2, B)])
    su = msg(mt, "Summary", [("value", 1, M, ".tbcheck.Summary.Value", "repeated")])
    msg(su.nested_type, "Value", [("node_name", 7, S), ("tag", 1, S),
                                  ("metadata", 9, M, ".tbcheck.SummaryMetadata"),
                                  ("simple_value", 2, FL, None, None, 0)], oneofs=["value"])
    # tensorboard/compat/proto/event.proto (subset)
    msg(mt, "Event", [("wall_time", 1, D), ("step", 2, I64),
                      ("file_version", 3, S, None, None, 0), ("graph_def", 4, B, None, None, 0),
                      ("summary", 5, M, ".tbcheck.Summary", None, 0)], oneofs=["what"])
    # tensorboard/plugins/hparams/api.proto (subset; enums as int32, same wire)
    msg(mt, "HParamInfo", [("name", 1, S), ("display_name", 2, S), ("description", 3, S),
                           ("type", 4, I32)])
    msg(mt, "MetricName", [("group", 1, S), ("tag", 2, S)])
    msg(mt, "MetricInfo", [("name", 1, M, ".tbcheck.MetricName"), ("display_name", 3, S),
                           ("description", 4, S), ("dataset_type", 5, I32)])
    msg(mt, "Experiment", [("name", 6, S), ("description", 1, S), ("user", 2, S),
                           ("time_created_secs", 3, D),
                           ("hparam_infos", 4, M, ".tbcheck.HParamInfo", "repeated"),
                           ("metric_infos", 5, M, ".tbcheck.MetricInfo", "repeated")])
    # tensorboard/plugins/hparams/plugin_data.proto
    ssi = msg(mt, "SessionStartInfo", [
        ("hparams", 1, M, ".tbcheck.SessionStartInfo.HparamsEntry", "repeated"),
        ("model_uri", 2, S), ("monitor_url", 3, S), ("group_name", 4, S),
        ("start_time_secs", 5, D)])
    ent = msg(ssi.nested_type, "HparamsEntry", [("key", 1, S),
                                                ("value", 2, M, ".google.protobuf.Value")])
    ent.options.map_entry = True
    msg(mt, "SessionEndInfo", [("status", 1, I32), ("end_time_secs", 2, D)])
    msg(mt, "HParamsPluginData", [
        ("version", 1, I32),
        ("experiment", 2, M, ".tbcheck.Experiment", None, 0),
        ("session_start_info", 3, M, ".tbcheck.SessionStartInfo", None, 0),
        ("session_end_info", 4, M, ".tbcheck.SessionEndInfo", None, 0)], oneofs=["data"])
    pool = descriptor_pool.Default()
    fd = pool.Add(fdp) if hasattr(pool, "Add") else None
    fd = pool.FindFileByName("blixt_tb_check.proto")
    def cls(desc):
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(desc)
        return message_factory.MessageFactory(pool).GetPrototype(desc)

    out = {}
    for name in ["Event", "Summary", "SummaryMetadata", "HParamInfo", "MetricName", "MetricInfo",
                 "Experiment", "SessionStartInfo", "SessionEndInfo", "HParamsPluginData"]:
        out[name] = cls(fd.message_types_by_name[name])
    out["Summary.Value"] = cls(fd.message_types_by_name["Summary"].nested_types_by_name["Value"])
    out["PluginData"] = cls(
        fd.message_types_by_name["SummaryMetadata"].nested_types_by_name["PluginData"])
    return out


def check_with_protobuf(recs):
    try:
        C = proto_classes()
    except ImportError as e:
        print("google.protobuf not importable (%s): part 3 skipped" % e)
        return
    Event, Summary, SMD = C["Event"], C["Summary"], C["SummaryMetadata"]
    HPD, Value, PluginData = C["HParamsPluginData"], C["Summary.Value"], C["PluginData"]

    # Built the way torch.utils.tensorboard.summary.hparams()/scalar() do.
    def plugin_summary(tag, content):
        smd = SMD(plugin_data=PluginData(plugin_name="hparams",
                                         content=content.SerializeToString()))
        return Summary(value=[Value(tag=tag, metadata=smd)])

    ssi = C["SessionStartInfo"]()
    hps = []
    for k, kind, v in HPARAMS:
        if kind == "number":
            ssi.hparams[k].number_value = v
            hps.append(C["HParamInfo"](name=k, type=3))
        else:
            ssi.hparams[k].string_value = v
            hps.append(C["HParamInfo"](name=k, type=1))
    exp = C["Experiment"](hparam_infos=hps,
                          metric_infos=[C["MetricInfo"](name=C["MetricName"](tag="hp_metric"))])
    sei = C["SessionEndInfo"](status=1)
    want = [Event(file_version="brain.Event:2"),
            Event(summary=Summary(value=[Value(tag="hp_metric", simple_value=-1.0)]),
                  step=0),
            Event(summary=plugin_summary("_hparams_/experiment", HPD(experiment=exp, version=0))),
            Event(summary=plugin_summary("_hparams_/session_start_info",
                                         HPD(session_start_info=ssi, version=0))),
            Event(summary=plugin_summary("_hparams_/session_end_info",
                                         HPD(session_end_info=sei, version=0)))]
    for tag, v, step in SCALARS:
        want.append(Event(summary=Summary(value=[Value(tag=tag, simple_value=v)]),
                          step=step))
    if len(recs) != len(want):
        check(False, "protobuf: record count")
        return
    for i, (data, w) in enumerate(zip(recs, want)):
        ev = Event.FromString(data)
        w.wall_time = ev.wall_time
        if i == 3:  # compare the map by content (serialized map order may differ)
            got_c = HPD.FromString(ev.summary.value[0].metadata.plugin_data.content)
            want_c = HPD.FromString(w.summary.value[0].metadata.plugin_data.content)
            check(got_c == want_c, "protobuf: session_start_info content")
            check(ev.summary.value[0].tag == w.summary.value[0].tag, "protobuf: ssi tag")
            continue
        check(ev == w, "protobuf: event %d equals torch's\n got %s\nwant %s" % (i, ev, w))
        check(w.SerializeToString() == data, "protobuf: event %d bytes equal protobuf's" % i)
    print("protobuf: %d events parsed and compared" % len(recs))


# ---- 4. TensorBoard itself --------------------------------------------------------
def check_with_tensorboard(logdir):
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except Exception as e:  # noqa: BLE001
        print("tensorboard not importable (%s): part 4 skipped" % e.__class__.__name__)
        return
    acc = event_accumulator.EventAccumulator(logdir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    check("loss" in tags and "acc" in tags and "hp_metric" in tags, "tensorboard scalar tags")
    loss = [(e.step, e.value) for e in acc.Scalars("loss")]
    check(loss == [(0, 0.5), (1, 0.25), (1 << 40, f32r(-2.5e-3))], "tensorboard loss %r" % loss)
    print("tensorboard: EventAccumulator read %d scalar tags" % len(tags))


# ---- 5. torch's SummaryWriter ------------------------------------------------------
def check_against_summarywriter(recs):
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except Exception as e:  # noqa: BLE001
        print("torch.utils.tensorboard unavailable (%s): part 5 skipped" % e.__class__.__name__)
        return
    with tempfile.TemporaryDirectory() as d:
        w = SummaryWriter(log_dir=d)
        w.add_scalar("hp_metric", -1, 0)
        params = {k: (v if k != "flag" else True) for k, _, v in HPARAMS}
        params["nested/depth"] = 3
        fw = w._get_file_writer()
        for s in hparams(params, {"hp_metric": -1}):
            fw.add_summary(s)
        for tag, v, step in SCALARS:
            w.add_scalar(tag, v, step)
        w.close()
        files = [f for f in os.listdir(d) if f.startswith("events.out.tfevents.")]
        theirs = read_records(os.path.join(d, files[0]))

    def strip(ev):
        ev = dict(ev)
        ev["wall_time"] = None
        return ev

    check(len(theirs) == len(recs), "SummaryWriter record count %d" % len(theirs))
    for i, (a, b) in enumerate(zip(recs, theirs)):
        if i == 3:
            continue  # map order may differ
        check(strip(decode_event(a)) == strip(decode_event(b)), "SummaryWriter event %d" % i)
    print("SummaryWriter: %d events compared" % len(theirs))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dump":
        for r in read_records(sys.argv[2]):
            print(decode_event(r))
        return 1 if FAILS else 0
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.argv[1], "--write", d], check=True, capture_output=True,
                             text=True).stdout.strip()
        path = out.splitlines()[-1]
        check(os.path.dirname(path) == os.path.join(d, "lightning_logs", "version_0"),
              "event file folder " + path)
        name = os.path.basename(path).split(".")
        check(name[:3] == ["events", "out", "tfevents"] and len(name[3]) == 10 and
              name[3].isdigit() and name[-1] == "0" and name[-2] == str(int(name[-2])),
              "event file name " + path)
        recs = read_records(path)
        check_decoded(recs)
        check_with_protobuf(recs)
        check_with_tensorboard(os.path.dirname(path))
        check_against_summarywriter(recs)
    print("read_tfevents: %s" % ("%d failures" % len(FAILS) if FAILS else "all checks passed"))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
