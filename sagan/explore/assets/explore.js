// sagan explore: the page's script. Plain JavaScript, no network: the attention rows sit in the page as
// deflated, base64-encoded bytes (8-bit codes, one float32 scale per row) that DecompressionStream inflates.
"use strict";

const meta = JSON.parse(document.getElementById("meta").textContent);
const S = meta.resolution;                          // image side in pixels
const SCALE = Math.max(1, Math.ceil(224 / S));      // display pixels per image pixel
const D = S * SCALE;                                // side of every map canvas
const state = {set: 0, image: 0, pinned: {x: S >> 1, y: S >> 1}, hover: null, relative: false,
               cmap: "inferno", opacity: 0.6, smooth: true};
let data = null;                                    // the inflated payload (Uint8Array)
const cache = new Map();

async function inflate(base64) {
  const raw = atob(base64.trim());
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function view(entry) {   // a typed array over the payload, as the Python packer described it
  const n = entry.shape.reduce((a, b) => a * b, 1);
  return entry.type === "f32" ? new Float32Array(data.buffer, entry.offset, n)
                              : new Uint8Array(data.buffer, entry.offset, n);
}

function arrays(layer) {
  if (!cache.has(layer)) cache.set(layer, {codes: view(layer.codes), scale: view(layer.scale), mean: view(layer.mean)});
  return cache.get(layer);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// ---------------------------------------------------------------------------------------------------------
// Attention rows

function cellOf(layer, x, y) {   // image pixel -> (row, col) of the feature-map cell that covers it
  const F = layer.feature_size;
  return [Math.min(Math.floor(y * F / S), F - 1), Math.min(Math.floor(x * F / S), F - 1)];
}

function attentionRow(layer, b, x, y) {   // the query's full row of weights over the (F/2)^2 keys
  const F = layer.feature_size, N = F * F, K = (F >> 1) * (F >> 1);
  const [r, c] = cellOf(layer, x, y);
  const a = arrays(layer), q = b * N + r * F + c;
  const scale = a.scale[q], codes = a.codes.subarray(q * K, (q + 1) * K);
  const weights = Array.from(codes, v => v / 255 * scale);
  const mean = Array.from(a.mean.subarray(b * K, (b + 1) * K));
  return {name: layer.name, cell: [r, c], keys: F >> 1, weights, mean,
          values: state.relative ? weights.map((w, k) => w / Math.max(mean[k], 1e-30)) : weights};
}

function query() { return state.hover || state.pinned; }

function shown() {   // what the panels show now: one row per layer (read back by the tests)
  const s = meta.sets[state.set], {x, y} = query();
  return s.layers.map(layer => attentionRow(layer, state.image, x, y));
}

// ---------------------------------------------------------------------------------------------------------
// Drawing

function imageCanvas(set, b, grey) {
  const key = `${set.key}/${b}/${grey}`;
  if (cache.has(key)) return cache.get(key);
  const rgb = view(set.images), canvas = el("canvas", {width: S, height: S});
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(S, S), off = b * S * S * 3;
  for (let i = 0; i < S * S; i++) {
    const [r, g, bl] = [rgb[off + 3 * i], rgb[off + 3 * i + 1], rgb[off + 3 * i + 2]];
    const v = grey ? Math.round((r + g + bl) / 3) : null;
    img.data.set(grey ? [v, v, v, 255] : [r, g, bl, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  cache.set(key, canvas);
  return canvas;
}

function colour(t) {   // t in [0, 1] -> [r, g, b] from the chosen colour map
  const lut = meta.colour_maps[state.cmap], i = 3 * Math.max(0, Math.min(255, Math.round(t * 255)));
  return [lut[i], lut[i + 1], lut[i + 2]];
}

function heatCanvas(values, keys, lo, hi) {
  const canvas = el("canvas", {width: keys, height: keys}), ctx = canvas.getContext("2d");
  const img = ctx.createImageData(keys, keys);
  values.forEach((v, k) => img.data.set([...colour((v - lo) / Math.max(hi - lo, 1e-30)), 255], 4 * k));
  ctx.putImageData(img, 0, 0);
  return canvas;
}

function marker(ctx, x, y, F) {
  const cell = D / F, cx = (x + 0.5) * SCALE, cy = (y + 0.5) * SCALE;
  if (F) {   // the feature-map cell of the query
    const [r, c] = [Math.min(Math.floor(y * F / S), F - 1), Math.min(Math.floor(x * F / S), F - 1)];
    ctx.strokeStyle = "rgba(255,255,255,0.9)";
    ctx.lineWidth = 1;
    ctx.strokeRect(c * cell + 0.5, r * cell + 0.5, cell - 1, cell - 1);
  }
  ctx.beginPath();
  ctx.arc(cx, cy, 5, 0, 2 * Math.PI);
  ctx.fillStyle = "#1f77b4";
  ctx.fill();
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#fff";
  ctx.stroke();
}

function fmt(v) { return v >= 0.01 && v < 1000 ? v.toFixed(3) : v.toExponential(2); }

function drawPanel(panel, row, set) {
  const {x, y} = query(), F = panel.layer.feature_size;
  const lo = Math.min(...row.values), hi = Math.max(...row.values);
  const ctx = panel.canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(imageCanvas(set, state.image, true), 0, 0, D, D);
  ctx.globalAlpha = state.opacity;
  ctx.imageSmoothingEnabled = state.smooth;   // bilinear upsampling of the (F/2) x (F/2) key grid, or its cells
  ctx.drawImage(heatCanvas(row.values, row.keys, lo, hi), 0, 0, D, D);
  ctx.globalAlpha = 1;
  marker(ctx, x, y, F);
  const bar = panel.bar.getContext("2d");
  for (let i = 0; i < panel.bar.width; i++) {
    bar.fillStyle = `rgb(${colour(i / (panel.bar.width - 1)).join(",")})`;
    bar.fillRect(i, 0, 1, panel.bar.height);
  }
  const peak = Math.max(...row.weights) * row.weights.length;
  const unit = state.relative ? "x the mean map" : "";
  panel.lo.textContent = fmt(lo) + (state.relative ? "x" : "");
  panel.hi.textContent = fmt(hi) + (state.relative ? "x" : "");
  panel.caption.textContent = `${row.name}: ${F}x${F} features, keys ${row.keys}x${row.keys}; query cell ` +
    `(${row.cell[0]}, ${row.cell[1]}); peak ${peak.toFixed(2)}x uniform` + (unit ? `; shown as ${unit}` : "");
}

function draw() {
  const set = meta.sets[state.set], {x, y} = query();
  const ctx = view_.main.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(imageCanvas(set, state.image, false), 0, 0, D, D);
  marker(ctx, x, y, 0);
  view_.where.textContent = `${set.title}, ${set.captions[state.image]}: query pixel (${x}, ${y})` +
    (state.hover ? " (hover; click to pin)" : " (pinned)");
  const rows = shown();
  view_.panels.forEach((panel, i) => drawPanel(panel, rows[i], set));
  document.querySelectorAll("canvas.thumb").forEach(c =>
    c.classList.toggle("selected", +c.dataset.set === state.set && +c.dataset.image === state.image));
}

// ---------------------------------------------------------------------------------------------------------
// The page

const view_ = {main: null, where: null, panels: [], panelBox: null};

function pixelAt(event) {
  const box = event.currentTarget.getBoundingClientRect();
  const px = v => Math.max(0, Math.min(S - 1, Math.floor(v * S)));
  return {x: px((event.clientX - box.left) / box.width), y: px((event.clientY - box.top) / box.height)};
}

function pointable(canvas) {
  canvas.addEventListener("mousemove", e => { state.hover = pixelAt(e); draw(); });
  canvas.addEventListener("mouseleave", () => { state.hover = null; draw(); });
  canvas.addEventListener("click", e => { state.pinned = pixelAt(e); state.hover = null; draw(); });
  return canvas;
}

function buildPanels() {
  const set = meta.sets[state.set];
  view_.panelBox.replaceChildren();
  view_.panels = set.layers.map(layer => {
    const panel = {layer, canvas: pointable(el("canvas", {width: D, height: D, class: "map"})),
                   bar: el("canvas", {width: D, height: 8, class: "bar"}), lo: el("span"), hi: el("span"),
                   caption: el("figcaption")};
    view_.panelBox.append(el("figure", {class: "panel"}, el("div", {class: "name"}, layer.name), panel.canvas,
                             panel.bar, el("div", {class: "scale"}, panel.lo, panel.hi), panel.caption));
    return panel;
  });
}

function select(setIndex, image) {
  const changed = setIndex !== state.set || !view_.panels.length;
  state.set = setIndex;
  state.image = image;
  if (changed) buildPanels();
  draw();
}

function controls() {
  const relative = el("input", {type: "checkbox", id: "relative",
                                onchange: e => { state.relative = e.target.checked; draw(); }});
  const cmap = el("select", {id: "cmap", onchange: e => { state.cmap = e.target.value; draw(); }},
                  ...Object.keys(meta.colour_maps).map(n => el("option", {value: n}, n)));
  const opacity = el("input", {type: "range", id: "opacity", min: "0", max: "1", step: "0.05", value: state.opacity,
                               oninput: e => { state.opacity = +e.target.value; draw(); }});
  const smooth = el("input", {type: "checkbox", id: "smooth", checked: "",
                              onchange: e => { state.smooth = e.target.checked; draw(); }});
  return el("div", {class: "controls"},
            el("label", {}, relative, " relative view (each weight divided by the image's mean map over all queries)"),
            el("label", {}, "colour map ", cmap), el("label", {}, "overlay ", opacity),
            el("label", {}, smooth, " smooth (off: one square per key)"));
}

function strips() {
  return meta.sets.map((set, i) => {
    const n = set.images.shape[0];
    const figures = Array.from({length: n}, (_, b) => {
      const c = el("canvas", {width: S, height: S, class: "thumb", "data-set": i, "data-image": b,
                              title: set.captions[b], onclick: () => select(i, b)});
      c.getContext("2d").drawImage(imageCanvas(set, b, false), 0, 0);
      return el("figure", {}, c, el("figcaption", {}, set.captions[b]));
    });
    const layers = set.layers.map(l => l.name).join(", ") || "none";
    return el("section", {class: "set", id: `set-${set.key}`},
              el("h2", {}, set.title), el("p", {class: "info"}, `${n} images; attention layers: ${layers}. ` +
                                           "Click an image to explore it."),
              el("div", {class: "strip"}, ...figures));
  });
}

async function main() {
  data = await inflate(document.getElementById("payload").textContent);
  view_.main = pointable(el("canvas", {width: D, height: D, class: "map", id: "query-image"}));
  view_.where = el("p", {class: "where"});
  view_.panelBox = el("div", {class: "panels"});
  const app = document.getElementById("app");
  app.replaceChildren(el("div", {id: "view"}, controls(), view_.where,
                         el("div", {class: "explorer"},
                            el("figure", {class: "panel"}, el("div", {class: "name"}, "image: point at any pixel"),
                               view_.main), view_.panelBox)),
                      ...strips());
  select(0, 0);
}

window.explorer = {meta, state, select, shown, attentionRow,
                   ready: main().catch(err => {
                     document.getElementById("app").textContent = `Could not draw the page: ${err}`;
                     console.error(err);
                     throw err;
                   })};
