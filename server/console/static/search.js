// Search over fragment metadata: which fragments of which cameras carry a tag (a consumer's label
// such as "person", or a producer's tag), with a value when given, within the last hour, day or
// week. It asks ListFragments with our MetadataFilter (docs/consumers.md), stream by stream; a
// result opens its camera and plays from that fragment.
"use strict";

// Matches listed at most, over every camera.
const MAX_MATCHES = 200;

const search = {
  async run(event) {
    event.preventDefault();
    const name = $("search-name").value.trim();
    const value = $("search-value").value.trim();
    const hours = Number($("search-hours").value);
    const list = $("search-results");
    list.replaceChildren();
    if (!name) return;
    status(`Searching for ${name}…`);
    let matches = [];
    const skipped = [];
    const names = await sortedStreamNames(list);
    if (!names) return;
    for (const stream of names) {
      try {
        matches.push(...(await this.inStream(stream, name, value, hours)));
      } catch (error) {
        // A camera without an archive, or one the key may not read, is left out, not the search.
        if (error instanceof ApiError && error.signIn) return;
        skipped.push(stream);
      }
    }
    // Newest first over every camera, then the first MAX_MATCHES.
    matches.sort((a, b) => b.startMs - a.startMs);
    matches = matches.slice(0, MAX_MATCHES);
    for (const match of matches) list.append(this.item(match));
    const what = value ? `${name} = ${value}` : name;
    const found = matches.length ? `${matches.length} fragment(s) with ${what}` : `No fragment with ${what} in the last ${hours} h`;
    status(skipped.length ? `${found} (not searched: ${skipped.join(", ")})` : found);
  },

  // The fragments of `stream` that arrived in the last `hours` with the tag: the newest
  // MAX_MATCHES of them.
  async inStream(stream, name, value, hours) {
    const filter = value ? { TagName: name, TagValue: value } : { TagName: name };
    const found = await arrivedFragments(stream, hours, { MetadataFilter: filter }, (sofar) => {
      // Pages come oldest first: keep only the newest MAX_MATCHES while reading on.
      if (sofar.length > 4 * MAX_MATCHES) sofar.splice(0, sofar.length - MAX_MATCHES);
      return true;
    });
    return found.slice(-MAX_MATCHES);
  },

  item(match) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "match";
    button.dataset.stream = match.stream;
    button.dataset.startMs = match.startMs;
    button.textContent = `${match.stream} · ${iso(match.startMs)}`;
    button.addEventListener("click", () => this.open(match));
    item.append(button);
    return item;
  },

  // Opens the camera with the longest look-back (search periods are at most that long), and
  // plays from the match's fragment (whether or not the timeline could list that far).
  async open(match) {
    grid.hide();
    const lookback = $("lookback");
    lookback.value = lookback.options[lookback.options.length - 1].value;
    await openStream(match.stream);
    if (state.stream === match.stream) await playFromMs(match.startMs, true);
  },
};

$("search-form").addEventListener("submit", (event) => search.run(event));
