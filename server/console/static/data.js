// Data streams beside the video views: the list, a stream's shards (with their lineage after a
// reshard), its consumers and their lag, a record viewer (from TRIM_HORIZON, LATEST or a time;
// data as text, JSON or hex) and sparklines of its CloudWatch metrics for the past hour. It calls
// KDS (ListStreams, ListShards, ListStreamConsumers, GetShardIterator, GetRecords), the consumer
// API (listConsumers) and CloudWatch (GetMetricData), as any client would.
"use strict";

// Records one read shows at most.
const RECORDS_PER_READ = 100;
// What the sparklines show: [CloudWatch name, statistic, label].
const SPARKLINES = [
  ["IncomingRecords", "Sum", "records in / min"],
  ["IncomingBytes", "Sum", "bytes in / min"],
  ["GetRecords.IteratorAgeMilliseconds", "Maximum", "iterator age ms"],
];

const kinesis = (operation, body) => awsJson("kinesis", `Kinesis_20131202.${operation}`, body);

const dataView = {
  stream: null,
  iterator: null,

  async loadStreams() {
    const list = $("data-streams");
    const names = [];
    let token;
    try {
      do {
        const page = await kinesis("ListStreams", token ? { NextToken: token } : {});
        names.push(...(page.StreamNames || []));
        token = page.HasMoreStreams ? page.NextToken : undefined;
      } while (token);
    } catch (error) {
      if (error instanceof ApiError && error.denied) return showDenied(list, error);
      throw error;
    }
    streamButtons(list, "data-stream", names, (name) => this.open(name).catch(report));
  },

  hide() {
    this.stream = null;
    this.iterator = null;
    $("data-viewer").hidden = true;
    for (const b of document.querySelectorAll("button.data-stream")) b.classList.remove("selected");
  },

  async open(name) {
    grid.hide();
    closeViewer();
    for (const b of document.querySelectorAll("button.stream")) b.classList.remove("selected");
    for (const b of document.querySelectorAll("button.data-stream")) b.classList.toggle("selected", b.dataset.stream === name);
    this.stream = name;
    this.iterator = null;
    $("data-title").textContent = name;
    $("records").replaceChildren();
    $("data-viewer").hidden = false;
    status(`Data stream ${name}`);
    const summary = (await kinesis("DescribeStreamSummary", { StreamName: name })).StreamDescriptionSummary;
    const shards = await this.shards(name);
    this.drawShards(shards);
    this.fillShardChoice(shards);
    await Promise.all([this.consumers(summary.StreamARN), this.sparklines(name)]);
  },

  async shards(name) {
    const shards = [];
    let token;
    do {
      const page = await kinesis("ListShards", token ? { NextToken: token } : { StreamName: name });
      shards.push(...page.Shards);
      token = page.NextToken;
    } while (token);
    return shards;
  },

  drawShards(shards) {
    const rows = shards.map((shard) => {
      const closed = Boolean(shard.SequenceNumberRange.EndingSequenceNumber);
      const parents = [shard.ParentShardId, shard.AdjacentParentShardId].filter(Boolean).join(" + ");
      const range = shard.HashKeyRange;
      return row([shard.ShardId, closed ? "closed" : "open", parents || "", `${shortHash(range.StartingHashKey)}…${shortHash(range.EndingHashKey)}`]);
    });
    $("shards").replaceChildren(row(["shard", "state", "from", "hash keys"], "th"), ...rows);
  },

  fillShardChoice(shards) {
    const choice = $("record-shard");
    choice.replaceChildren(...shards.map((shard) => new Option(shard.ShardId, shard.ShardId)));
  },

  async consumers(streamArn) {
    const list = $("data-consumers");
    const items = [];
    const fanOut = await kinesis("ListStreamConsumers", { StreamARN: streamArn }).catch(() => ({ Consumers: [] }));
    for (const consumer of fanOut.Consumers || []) {
      items.push(`${consumer.ConsumerName} (enhanced fan-out, ${consumer.ConsumerStatus})`);
    }
    const hooks = await api("/listConsumers", { DataStreamName: this.stream }).catch(() => ({ Consumers: [] }));
    for (const consumer of hooks.Consumers || []) {
      const metrics = consumer.Metrics || {};
      items.push(`${consumer.ConsumerName} (${consumer.State}): ${metrics.LagRecords ?? 0} records, ${metrics.LagMs ?? 0} ms behind`);
    }
    list.replaceChildren(...items.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    if (!items.length) list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "No consumers." }));
  },

  async sparklines(name) {
    const now = Date.now();
    const queries = SPARKLINES.map(([metric, stat], i) => ({
      Id: `m${i}`,
      MetricStat: {
        Metric: { Namespace: "AWS/Kinesis", MetricName: metric, Dimensions: [{ Name: "StreamName", Value: name }] },
        Period: 60,
        Stat: stat,
      },
    }));
    const body = { MetricDataQueries: queries, StartTime: (now - 3_600_000) / 1000, EndTime: (now + 60_000) / 1000, ScanBy: "TimestampAscending" };
    const answer = await awsJson("monitoring", "GraniteServiceVersion20100801.GetMetricData", body);
    const figures = (answer.MetricDataResults || []).map((result, i) => sparkline(SPARKLINES[i][2], result.Values || []));
    $("sparklines").replaceChildren(...figures);
  },

  // Reads from the chosen shard and position, or on from the last read.
  async read(onward) {
    if (!this.stream) return;
    if (!onward || !this.iterator) {
      const position = $("record-position").value;
      const request = { StreamName: this.stream, ShardId: $("record-shard").value, ShardIteratorType: position };
      if (position === "AT_TIMESTAMP") {
        const at = new Date($("record-time").value).getTime();
        if (Number.isNaN(at)) return status("Choose the time to read from.");
        request.Timestamp = at / 1000;
      }
      this.iterator = (await kinesis("GetShardIterator", request)).ShardIterator;
      $("records").replaceChildren(row(["sequence number", "arrived", "partition key", "data"], "th"));
    }
    const page = await kinesis("GetRecords", { ShardIterator: this.iterator, Limit: RECORDS_PER_READ });
    this.iterator = page.NextShardIterator;
    const format = $("record-format").value;
    for (const record of page.Records) {
      const arrived = new Date(record.ApproximateArrivalTimestamp * 1000).toISOString();
      $("records").append(row([record.SequenceNumber, arrived, record.PartitionKey, shown(record.Data, format)]));
    }
    status(`${page.Records.length} record(s), ${page.MillisBehindLatest} ms behind the newest`);
  },
};

function row(cells, tag = "td") {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(Object.assign(document.createElement(tag), { textContent: cell }));
  return tr;
}

const shortHash = (decimal) => BigInt(decimal).toString(16).padStart(32, "0").slice(0, 6);

// A record's data (base64 on the wire) as text, indented JSON, or hex bytes.
function shown(base64, format) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  if (format === "hex") return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
  const text = new TextDecoder().decode(bytes);
  if (format !== "json") return text;
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return `(not JSON) ${text}`;
  }
}

// A labelled SVG polyline of `values`, newest on the right.
function sparkline(label, values) {
  const figure = document.createElement("figure");
  figure.className = "sparkline";
  figure.dataset.points = String(values.length);
  const width = 160;
  const height = 32;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const y = (v) => (height - (v / max) * (height - 2) - 1).toFixed(1);
  // One minute of data is drawn as a level line across.
  const points = values.length === 1 ? [`0,${y(values[0])}`, `${width},${y(values[0])}`] : values.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  const caption = document.createElement("figcaption");
  caption.textContent = `${label}: ${values.length ? values[values.length - 1] : 0}`;
  figure.append(svg, caption);
  return figure;
}

$("record-read").addEventListener("click", () => dataView.read(false).catch(report));
$("record-more").addEventListener("click", () => dataView.read(true).catch(report));
$("record-position").addEventListener("change", () => {
  $("record-time").hidden = $("record-position").value !== "AT_TIMESTAMP";
});
