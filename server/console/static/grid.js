// The live grid: every camera at once, each tile live over WebRTC (or LL-HLS when WebRTC gives no
// picture), as the main viewer's live view plays one. A tile's name opens that camera's viewer.
"use strict";

// Tiles shown at once: each is a WebRTC session (or an LL-HLS player) and a decoder in the browser.
const MAX_TILES = 16;

const grid = {
  players: [],
  // Bumped by every show and hide: a show still listing streams when another began stops there.
  generation: 0,

  async show() {
    closeViewer();
    dataView.hide();
    for (const b of document.querySelectorAll("button.stream")) b.classList.remove("selected");
    this.hide();
    const generation = this.generation;
    const tiles = $("grid-tiles");
    $("grid").hidden = false;
    const names = await sortedStreamNames(tiles);
    if (!names || generation !== this.generation) return;
    const shown = names.slice(0, MAX_TILES);
    $("grid-note").textContent =
      names.length > shown.length ? `The first ${shown.length} of ${names.length} cameras.` : `${names.length} camera(s).`;
    status("Live grid");
    await Promise.all(shown.map((name) => this.addTile(tiles, name)));
  },

  async addTile(tiles, name) {
    const figure = document.createElement("figure");
    figure.className = "tile";
    figure.dataset.stream = name;
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.autoplay = true;
    const caption = document.createElement("figcaption");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = name;
    open.addEventListener("click", () => this.open(name));
    const transport = document.createElement("span");
    transport.className = "transport";
    caption.append(open, transport);
    figure.append(video, caption);
    tiles.append(figure);
    const onError = (error) => window.framelogConsole.errors.push({ ...error, tile: name });
    const tilePlayer = new Player(video, onError);
    this.players.push(tilePlayer);
    try {
      const how = await tilePlayer.live(() => whepUrl(name), () => sessionUrl("LIVE", undefined, undefined, name));
      transport.textContent = how || "";
      figure.dataset.transport = how || "";
    } catch (error) {
      transport.textContent = error instanceof ApiError && error.denied ? notAllowed(error) : error.message;
      figure.dataset.transport = "";
    }
  },

  stop() {
    for (const tilePlayer of this.players) tilePlayer.stop();
    this.players = [];
  },

  hide() {
    this.generation += 1;
    this.stop();
    $("grid-tiles").replaceChildren();
    $("grid").hidden = true;
  },

  open(name) {
    this.hide();
    openStream(name);
  },
};

$("grid-button").addEventListener("click", () => grid.show());
