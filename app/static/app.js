/* lipsync web page: push a job, follow it, show the result. Plain JavaScript, no libraries. */
"use strict";

(() => {
  const API = "/api/v1/lipsync";
  const KEY_STORE = "lipsync.apiKey";
  const JOBS_STORE = "lipsync.jobs";
  const MAX_JOBS = 20;
  const FINAL = new Set(["succeeded", "failed", "canceled"]);
  const QUALITY_FINAL = new Set(["ready", "failed", "skipped"]);
  // Over, its measurement included: the result comes first, lipsync evaluate's numbers after.
  const measured = (body) =>
    FINAL.has(body.state) && (!body.quality || QUALITY_FINAL.has(body.quality.state));

  const STAGES = {
    queued: "Waiting for a worker",
    starting: "Starting",
    fetching: "Fetching the files",
    probe: "Checking the files",
    analyse: "Finding the face",
    audio: "Reading the speech",
    render: "Animating the mouth",
    evaluate: "Measuring the lip sync",
    done: "Done",
    failed: "Failed",
    canceled: "Canceled",
  };

  // The service's stable error codes, in words a person understands.
  const ERRORS = {
    no_face: "No face was found in the video or picture. Use one where a face is clearly visible, facing the camera and not too small.",
    unsupported_media: "This kind of file is not supported. Use a video (MP4, MOV, MKV, WebM, AVI) or a picture (PNG, JPG, WebP) for the face, and WAV, MP3, M4A, AAC, OGG or FLAC for the speech.",
    corrupt_media: "A file could not be read. It may be damaged or only partly copied; try saving or exporting it again.",
    too_large: "A file is too big for this server: too many bytes, too high a resolution, or too long.",
    audio_empty: "The speech file is silent, so there is nothing to move the lips to.",
    timeout: "The job took longer than this server allows and was stopped. Try a shorter clip.",
    canceled: "The job was canceled.",
    invalid_option: "One of the options is not valid for these files.",
    model_missing: "The chosen engine needs model weights that are not installed on this server.",
    model_mismatch: "The model weights on this server do not fit the chosen engine.",
    device_unavailable: "The server's GPU is not available right now. Try again later.",
    output_error: "The server could not write the result video.",
    worker_lost: "The server stopped while working on this job, several times. Try again later.",
    internal_error: "Something went wrong on the server.",
    queue_full: "The server is busy: too many jobs are waiting. Try again in a little while.",
    unavailable: "The service is unavailable for a moment. Try again shortly.",
    missing_field: "Choose both a face and a speech file.",
    empty_field: "One of the files is empty.",
    invalid_upload: "The server did not understand the upload. Try again.",
    unauthorized: "This server needs an API key. Enter a valid key under “API key” at the top.",
    not_found: "This job is no longer on the server: results expire after a while, or it was made with another API key.",
    finished: "The job had already finished, so it could not be canceled.",
    network: "Could not reach the server. Check your connection and try again.",
    bad_request: "The server refused the request.",
  };

  // The engines that need no weights, as the server lists them (GET /options), its default first.
  let weightFree = [];
  const orList = (names) => names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;

  function problemWords(code) {
    const words = ERRORS[code] || "Something went wrong.";
    if (code !== "model_missing" || weightFree.length === 0) return words;
    const which = weightFree.length === 1 ? "which needs none" : "which need none";
    return `${words} Choose the ${orList(weightFree)} engine, ${which}.`;
  }

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("form"), submit: $("submit"), formError: $("form-error"),
    videoFile: $("video-file"), audioFile: $("audio-file"),
    videoDrop: $("video-drop"), audioDrop: $("audio-drop"),
    videoName: $("video-name"), audioName: $("audio-name"),
    videoPreview: $("video-preview"), audioPreview: $("audio-preview"),
    key: $("api-key"), keyForget: $("key-forget"), keyState: $("key-state"), keyPanel: $("key-panel"),
    job: $("job"), jobId: $("job-id"), jobState: $("job-state"), cancel: $("cancel"),
    uploadBox: $("upload-box"), uploadBar: $("upload-progress"), uploadText: $("upload-text"),
    progressBox: $("progress-box"), jobBar: $("job-progress"), jobStage: $("job-stage"),
    jobPercent: $("job-percent"), announce: $("announce"),
    error: $("error"), errorTitle: $("error-title"), errorText: $("error-text"), errorDetail: $("error-detail"),
    compare: $("compare"), inputMedia: $("input-media"), resultVideo: $("result-video"),
    download: $("download"), facts: $("result-facts"),
    recent: $("recent"), recentEmpty: $("recent-empty"), recentClear: $("recent-clear"),
  };

  // ---- options: one field per option the server declares (GET /api/v1/lipsync/options) ---
  function optionField(opt) {
    const id = opt.name.replace(/_/g, "-");
    const box = document.createElement("div");
    box.className = "field";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = opt.label.charAt(0).toUpperCase() + opt.label.slice(1);
    let input;
    if (opt.choices) {
      input = document.createElement("select");
      const first = new Option(opt.default !== null ? `Server default (${opt.default})` : "Server default", "");
      input.append(first);
      for (const c of opt.choices) input.append(new Option(c.help ? `${c.value} — ${c.help}` : c.value, c.value));
    } else {
      input = document.createElement("input");
      const numeric = opt.type === "int" || opt.type === "float";
      input.type = numeric ? "number" : "text";
      if (numeric) {
        input.step = opt.type === "int" ? "1" : "any";
        input.inputMode = opt.type === "int" ? "numeric" : "decimal";
        if (opt.minimum !== null) input.min = String(opt.minimum);
        if (opt.maximum !== null) input.max = String(opt.maximum);
      }
      if (opt.type === "ints") {
        input.pattern = `\\s*-?\\d+\\s*([,\\s]\\s*-?\\d+\\s*){${opt.count - 1}}`;
      }
      const shown = Array.isArray(opt.default) ? opt.default.join(",") : opt.default;
      input.placeholder = shown !== null && shown !== undefined ? String(shown) : (opt.example || "");
      input.autocomplete = "off";
    }
    input.id = id;
    input.name = opt.name;
    const help = document.createElement("p");
    help.className = "help";
    help.id = `${id}-help`;
    help.textContent = opt.help + (opt.engines ? ` (${opt.engines.join(", ")} only)` : "");
    input.setAttribute("aria-describedby", help.id);
    box.append(label, input, help);
    return box;
  }

  async function loadOptions() {
    const basic = $("options-basic"), more = $("options-more");
    try {
      const resp = await fetch(`${API}/options`, { cache: "no-store" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const body = await resp.json();
      for (const opt of body.options) (opt.advanced ? more : basic).append(optionField(opt));
      const engine = body.options.find((o) => o.name === "engine");
      weightFree = (body.engines || []).filter((e) => !e.needs_weights).map((e) => e.name)
        .sort((a, b) => (b === (engine && engine.default)) - (a === (engine && engine.default)));
      $("options-more-box").hidden = more.childElementCount === 0;
    } catch (err) {
      basic.textContent = `The options could not be loaded (${err.message}); the server's defaults apply.`;
    } finally {
      basic.removeAttribute("aria-busy");
    }
  }

  // ---- storage ---------------------------------------------------------------------------
  const store = {
    get(name, fallback) {
      try { const v = localStorage.getItem(name); return v === null ? fallback : JSON.parse(v); }
      catch { return fallback; }
    },
    set(name, value) {
      try { localStorage.setItem(name, JSON.stringify(value)); } catch { /* private mode */ }
    },
  };

  const apiKey = () => el.key.value.trim();
  const headers = (extra) => {
    const h = Object.assign({}, extra || {});
    if (apiKey()) h["X-API-Key"] = apiKey();
    return h;
  };

  function showKeyState() {
    const set = apiKey() !== "";
    el.keyState.textContent = set ? "saved" : "not set";
    el.keyState.dataset.set = set ? "yes" : "no";
  }

  // ---- recent jobs ----------------------------------------------------------------------
  let jobs = store.get(JOBS_STORE, []);
  if (!Array.isArray(jobs)) jobs = [];
  const saveJobs = () => store.set(JOBS_STORE, jobs.slice(0, MAX_JOBS));
  const findJob = (id) => jobs.find((j) => j.id === id);

  function rememberJob(entry) {
    jobs = [entry, ...jobs.filter((j) => j.id !== entry.id)].slice(0, MAX_JOBS);
    saveJobs();
    renderJobs();
  }

  function updateJob(id, patch) {
    const j = findJob(id);
    if (!j) return;
    Object.assign(j, patch);
    saveJobs();
    renderJobs();
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  function renderJobs() {
    el.recent.replaceChildren();
    el.recentEmpty.hidden = jobs.length > 0;
    el.recentClear.hidden = jobs.length === 0;
    for (const j of jobs) {
      const li = document.createElement("li");
      li.dataset.id = j.id;
      li.dataset.state = j.state;
      if (current && current.id === j.id) li.classList.add("current");

      const what = document.createElement("div");
      what.className = "what";
      what.textContent = `${j.video || "face"} + ${j.audio || "speech"}`;
      const when = document.createElement("span");
      when.className = "when";
      when.textContent = `${timeFmt.format(new Date(j.at))} · ${j.id.slice(0, 8)}`;
      what.append(when);

      const badge = document.createElement("span");
      badge.className = "badge";
      badge.dataset.state = j.state;
      badge.textContent = j.state;

      const acts = document.createElement("div");
      acts.className = "acts";
      const open = document.createElement("button");
      open.type = "button";
      open.className = "small";
      open.textContent = "Open";
      open.disabled = j.state === "expired";
      open.setAttribute("aria-label", `Open job ${what.firstChild.textContent}`);
      open.addEventListener("click", () => openJob(j.id));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "small ghost";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove job ${what.firstChild.textContent} from this list`);
      remove.addEventListener("click", () => {
        jobs = jobs.filter((x) => x.id !== j.id);
        saveJobs();
        renderJobs();
        (el.recent.querySelector("button") || el.form.querySelector("button")).focus();
      });
      acts.append(open, remove);
      li.append(what, badge, acts);
      el.recent.append(li);
    }
  }

  // ---- files and previews ---------------------------------------------------------------
  const inputsOf = new Map(); // job id -> {url, kind} of the face input, this page load only
  const urls = { video: null, audio: null };

  function kindOf(file) {
    const type = file.type || "";
    if (type.startsWith("image/")) return "image";
    if (type.startsWith("video/")) return "video";
    if (type.startsWith("audio/")) return "audio";
    const ext = (file.name.split(".").pop() || "").toLowerCase();
    if (["png", "jpg", "jpeg", "webp"].includes(ext)) return "image";
    if (["mp4", "mov", "mkv", "webm", "avi"].includes(ext)) return "video";
    return "audio";
  }

  function mediaElement(url, kind, label) {
    let node;
    if (kind === "image") {
      node = document.createElement("img");
      node.alt = label;
    } else {
      node = document.createElement(kind === "audio" ? "audio" : "video");
      node.controls = true;
      node.preload = "metadata";
      node.setAttribute("aria-label", label);
      if (kind === "video") node.playsInline = true;
    }
    node.src = url;
    node.addEventListener("error", () => {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = "This browser cannot preview this file; the server may still accept it.";
      node.replaceWith(note);
    }, { once: true });
    return node;
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
    return `${(n / 1024 ** 3).toFixed(2)} GB`;
  }

  function showFile(which) {
    const input = which === "video" ? el.videoFile : el.audioFile;
    const preview = which === "video" ? el.videoPreview : el.audioPreview;
    const name = which === "video" ? el.videoName : el.audioName;
    const drop = which === "video" ? el.videoDrop : el.audioDrop;
    const file = input.files && input.files[0];
    if (urls[which]) URL.revokeObjectURL(urls[which]);
    urls[which] = null;
    preview.replaceChildren();
    drop.classList.remove("invalid");
    if (!file) {
      preview.hidden = true;
      name.textContent = "";
      return;
    }
    name.textContent = `${file.name} (${formatBytes(file.size)})`;
    urls[which] = URL.createObjectURL(file);
    const kind = which === "audio" ? (kindOf(file) === "video" ? "video" : "audio") : kindOf(file);
    const label = which === "video" ? `Preview of ${file.name}` : `Listen to ${file.name}`;
    preview.append(mediaElement(urls[which], kind, label));
    preview.hidden = false;
    el.formError.hidden = true;
  }

  function setupDrop(drop, input, which) {
    input.addEventListener("change", () => showFile(which));
    ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    }));
    ["dragleave", "dragend"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
    drop.addEventListener("drop", (ev) => {
      ev.preventDefault();
      drop.classList.remove("over");
      const files = ev.dataTransfer && ev.dataTransfer.files;
      if (!files || files.length === 0) return;
      const dt = new DataTransfer();
      dt.items.add(files[0]);
      input.files = dt.files;
      showFile(which);
    });
  }

  // ---- errors -----------------------------------------------------------------------------
  /** Turn an HTTP answer into {code, message} using the API's `detail` shapes. */
  function problemOf(status, body) {
    const detail = body && body.detail;
    if (status === 401) return { code: "unauthorized", message: typeof detail === "string" ? detail : "" };
    if (status === 404) return { code: "not_found", message: "" };
    if (detail && typeof detail === "object" && !Array.isArray(detail) && detail.code) {
      return { code: detail.code, message: detail.message || "" };
    }
    if (Array.isArray(detail)) {  // request validation: a list of {loc, msg}
      const msgs = detail.map((d) => `${(d.loc || []).slice(-1)[0] || "field"}: ${d.msg}`);
      return { code: "invalid_option", message: msgs.join("; ") };
    }
    if (status === 413) return { code: "too_large", message: "" };
    if (status === 415) return { code: "unsupported_media", message: "" };
    if (status === 429) return { code: "queue_full", message: "" };
    if (status === 503) return { code: "unavailable", message: "" };
    return { code: status >= 500 ? "internal_error" : "bad_request", message: typeof detail === "string" ? detail : `HTTP ${status}` };
  }

  function showProblem(problem, title, soft) {
    const words = problemWords(problem.code);
    el.errorTitle.textContent = title || "It did not work";
    el.errorText.textContent = words;
    const bits = [];
    if (problem.message && problem.message !== words) bits.push(problem.message);
    el.errorDetail.textContent = "";
    if (bits.length) el.errorDetail.append(`Details: ${bits.join(" ")} `);
    const code = document.createElement("code");
    code.textContent = problem.code;
    el.errorDetail.append("(code ", code, ")");
    el.error.classList.toggle("soft", !!soft);
    el.error.hidden = false;
    if (problem.code === "unauthorized") {
      el.keyPanel.open = true;
      el.key.focus();
    }
  }

  const hideProblem = () => { el.error.hidden = true; };

  // ---- the current job ------------------------------------------------------------------
  let current = null; // the job shown: {id, xhr (while uploading), stream, timer, stopped}
  let lastAnnounced = "";

  function announce(text) {
    if (text !== lastAnnounced) {
      lastAnnounced = text;
      el.announce.textContent = text;
    }
  }

  function setState(state) {
    el.jobState.textContent = state || "—";
    el.jobState.dataset.state = state || "";
    el.job.dataset.state = state || "";
  }

  function stopCurrent() {
    if (!current) return;
    if (current.xhr) current.xhr.abort();
    if (current.stream) current.stream.abort();
    clearTimeout(current.timer);
    current.stopped = true;
  }

  function resetJobView(id) {
    el.job.hidden = false;
    el.jobId.textContent = id ? id.slice(0, 8) : "";
    el.jobId.title = id || "";
    hideProblem();
    el.compare.hidden = true;
    el.uploadBox.hidden = true;
    el.progressBox.hidden = true;
    el.cancel.hidden = true;
    el.cancel.disabled = false;
    el.cancel.textContent = "Cancel";
    releaseResult();
    setState("");
  }

  let resultUrl = null;
  function releaseResult() {
    el.resultVideo.removeAttribute("src");
    el.resultVideo.load();
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = null;
    el.download.removeAttribute("href");
    el.download.setAttribute("aria-disabled", "true");
    el.facts.textContent = "";
  }

  function showProgress(body) {
    el.progressBox.hidden = false;
    const pct = Math.round((body.progress || 0) * 100);
    el.jobBar.value = pct;
    const stage = body.cancel_requested && !FINAL.has(body.state)
      ? "Canceling…" : (STAGES[body.stage] || body.stage || "Working");
    el.jobStage.textContent = stage;
    el.jobPercent.textContent = `${pct}%`;
    // announce stage changes and every 25%, not every poll
    announce(`${stage}, ${Math.floor(pct / 25) * 25}%`);
  }

  // A second speech file with its start time: two segments (the first speech from 0 until
  // the second starts, the second for its own length). A segments field typed in the
  // options wins.
  let secondSeconds = NaN;
  function readSecondLength() {
    const file = $("audio2-file").files && $("audio2-file").files[0];
    secondSeconds = NaN;
    if (!file) return;
    const probe = document.createElement("audio");
    probe.preload = "metadata";
    probe.onloadedmetadata = () => { secondSeconds = probe.duration; URL.revokeObjectURL(probe.src); };
    probe.src = URL.createObjectURL(file);
  }

  function secondSpeech(options) {
    const file = $("audio2-file").files && $("audio2-file").files[0];
    if (!file || options.segments) return null;
    const start = parseFloat($("audio2-start").value);
    if (!(start > 0)) return { error: "Say when the second speech starts (seconds, above 0)." };
    if (!(secondSeconds > 0) || !isFinite(secondSeconds)) {
      return { error: "The second speech file's length could not be read; try another format." };
    }
    const end = Math.round((start + secondSeconds) * 1000) / 1000;
    const segments = JSON.stringify([
      { start: 0, end: start, audio: 0 },
      { start: start, end: end, audio: 1 },
    ]);
    return { file, segments };
  }

  function submit(ev) {
    ev.preventDefault();
    const video = el.videoFile.files && el.videoFile.files[0];
    const audio = el.audioFile.files && el.audioFile.files[0];
    el.videoDrop.classList.toggle("invalid", !video);
    el.audioDrop.classList.toggle("invalid", !audio);
    if (!video || !audio) {
      el.formError.textContent = !video && !audio ? "Choose a face and a speech file first."
        : !video ? "Choose a video or portrait of the face first." : "Choose a speech file first.";
      el.formError.hidden = false;
      (video ? el.audioFile : el.videoFile).focus();
      return;
    }
    el.formError.hidden = true;

    const data = new FormData();
    data.append("audio", audio, audio.name);
    data.append("video", video, video.name);
    const options = {};
    for (const field of el.form.querySelectorAll("select[name], input[name]:not([type=file])")) {
      const value = field.value.trim();
      if (value !== "") { data.append(field.name, value); options[field.name] = value; }
    }
    const second = secondSpeech(options);
    if (second && second.error) {
      el.formError.textContent = second.error;
      el.formError.hidden = false;
      $("audio2-start").focus();
      return;
    }
    if (second) {
      data.append("audio_1", second.file, second.file.name);
      data.append("segments", second.segments);
      options.segments = second.segments;
    }

    stopCurrent();
    resetJobView("");
    const job = { id: "", stopped: false, xhr: new XMLHttpRequest() };
    current = job;
    const inputUrl = URL.createObjectURL(video);
    const inputKind = kindOf(video);

    el.jobId.textContent = "(uploading)";
    setState("uploading");
    el.uploadBox.hidden = false;
    el.uploadBar.value = 0;
    el.uploadText.textContent = `0 of ${formatBytes(audio.size + video.size)}`;
    el.cancel.hidden = false;
    el.submit.disabled = true;
    announce("Uploading");

    const xhr = job.xhr;
    xhr.open("POST", `${API}/push`);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = Math.round((e.loaded / e.total) * 100);
      el.uploadBar.value = pct;
      el.uploadText.textContent = `${formatBytes(e.loaded)} of ${formatBytes(e.total)} (${pct}%)`;
      announce(`Uploading, ${Math.floor(pct / 25) * 25}%`);
    });
    xhr.addEventListener("load", () => {
      job.xhr = null;
      el.submit.disabled = false;
      if (xhr.status === 202 && xhr.response && xhr.response.task_id) {
        el.uploadBar.value = 100;
        const id = xhr.response.task_id;
        job.id = id;
        inputsOf.set(id, { url: inputUrl, kind: inputKind });
        el.jobId.textContent = id.slice(0, 8);
        el.jobId.title = id;
        rememberJob({ id, at: Date.now(), state: "queued", video: video.name, audio: audio.name, options });
        setState("queued");
        showProgress({ progress: 0, stage: "queued", state: "queued" });
        follow(job);
      } else {
        URL.revokeObjectURL(inputUrl);
        el.cancel.hidden = true;
        el.uploadBox.hidden = true;
        el.jobId.textContent = "(not created)";
        setState("failed");
        showProblem(problemOf(xhr.status, xhr.response), "The upload was refused");
      }
    });
    xhr.addEventListener("error", () => {
      job.xhr = null;
      el.submit.disabled = false;
      el.cancel.hidden = true;
      el.jobId.textContent = "(not created)";
      setState("failed");
      showProblem({ code: "network", message: "" }, "The upload did not get through");
    });
    xhr.addEventListener("abort", () => {
      el.submit.disabled = false;
      if (current !== job) return;
      el.cancel.hidden = true;
      el.jobId.textContent = "(not created)";
      setState("canceled");
      showProblem({ code: "canceled", message: "The upload was stopped before the job was created." }, "Canceled", true);
    });
    xhr.send(data);
  }

  async function api(path, init) {
    const resp = await fetch(path, Object.assign({ cache: "no-store" }, init, { headers: headers(init && init.headers) }));
    let body = null;
    try { body = await resp.json(); } catch { /* not JSON */ }
    return { status: resp.status, body };
  }

  // Live progress: GET /events (Server-Sent Events) read with fetch() and a streaming
  // reader, so the API key travels as a header (EventSource cannot send one). Any trouble
  // with the stream (an old server, a proxy that buffers, a dropped connection) falls back
  // to polling /status, which also shows errors such as 401 or 404.
  function parseEvent(block) {
    const ev = { event: "message", data: [] };
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const name = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      if (name === "event") ev.event = value;
      else if (name === "data") ev.data.push(value);
    }
    return { event: ev.event, data: ev.data.join("\n") };
  }

  async function follow(job) {
    if (job.stopped || current !== job) return;
    if (typeof AbortController === "undefined" || typeof TextDecoder === "undefined") {
      poll(job);
      return;
    }
    const ctrl = new AbortController();
    job.stream = ctrl;
    let final = false;
    try {
      const resp = await fetch(`${API}/events?task_id=${encodeURIComponent(job.id)}`, {
        headers: headers({ Accept: "text/event-stream" }), cache: "no-store", signal: ctrl.signal,
      });
      const type = resp.headers.get("content-type") || "";
      if (resp.ok && type.startsWith("text/event-stream") && resp.body) {
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const ev = parseEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (job.stopped || current !== job) return;
            if (ev.event !== "status") continue;  // "error": polling says what happened
            const body = JSON.parse(ev.data);
            hideProblem();
            render(job, body);
            final = measured(body);
          }
        }
      }
    } catch { /* aborted or dropped: polling takes over below */ }
    job.stream = null;
    if (!final && !job.stopped && current === job) poll(job);
  }

  async function poll(job) {
    if (job.stopped || current !== job) return;
    let r;
    try {
      r = await api(`${API}/status?task_id=${encodeURIComponent(job.id)}`);
    } catch {
      if (job.stopped || current !== job) return;
      el.jobStage.textContent = "Connection lost, retrying…";
      job.timer = setTimeout(() => poll(job), 3000);
      return;
    }
    if (job.stopped || current !== job) return;
    if (r.status !== 200) {
      const problem = problemOf(r.status, r.body);
      if (r.status === 404) updateJob(job.id, { state: "expired" });
      el.cancel.hidden = true;
      setState(r.status === 404 ? "expired" : "unknown");
      if (r.status === 503 || r.status === 429) {  // transient: keep trying
        showProblem(problem, "Waiting for the service", true);
        job.timer = setTimeout(() => poll(job), 3000);
        return;
      }
      showProblem(problem, r.status === 404 ? "Not available" : "Could not follow the job");
      return;
    }
    hideProblem();
    render(job, r.body);
    if (!measured(r.body)) {  // after the result, slower: only its measurement is awaited
      const wait = r.body.state === "queued" ? 700 : FINAL.has(r.body.state) ? 1000 : 300;
      job.timer = setTimeout(() => poll(job), wait);
    }
  }

  function render(job, body) {
    setState(body.state);
    el.uploadBox.hidden = true;
    showProgress(body);
    const entry = findJob(job.id);
    if (entry && entry.state !== body.state) updateJob(job.id, { state: body.state });
    el.cancel.hidden = FINAL.has(body.state);
    if (body.cancel_requested) {
      el.cancel.disabled = true;
      el.cancel.textContent = "Canceling…";
    }
    if (body.state === "succeeded") {
      if (!job.shown) {  // once: later events only bring the measurement
        job.shown = true;
        announce("Done. The result is ready.");
        showResult(job, body);
      } else {
        showFacts(job, body);
      }
    } else if (body.state === "failed") {
      announce("The job failed.");
      el.jobPercent.textContent = "";
      showProblem(body.error || { code: "internal_error", message: "" }, "The job failed");
    } else if (body.state === "canceled") {
      announce("The job was canceled.");
      el.jobStage.textContent = "Canceled";
      showProblem({ code: "canceled", message: "" }, "Canceled", true);
    }
  }

  // The result's facts, then its lip-sync measurement, which arrives after the result.
  function factsOf(body) {
    const result = body.result || {};
    const facts = [];
    if (typeof result.duration_s === "number") facts.push(`${result.duration_s.toFixed(1)} s`);
    if (typeof result.frames === "number") facts.push(`${result.frames} frames`);
    if (result.no_face_frames) facts.push(`${result.no_face_frames} without a face (left as they were)`);
    if (body.started_at && body.finished_at) {
      const secs = (Date.parse(body.finished_at) - Date.parse(body.started_at)) / 1000;
      if (secs >= 0) facts.push(`made in ${secs.toFixed(1)} s`);
    }
    const q = body.quality;
    if (q && (q.state === "pending" || q.state === "running")) {
      facts.push("measuring the lip sync…");
    } else if (q && q.state === "ready" && q.metrics) {
      const m = q.metrics;
      if (typeof m.sync_offset_ms === "number" && typeof m.sync_score === "number") {
        const off = Math.round(m.sync_offset_ms);
        facts.push(`lip sync: offset ${off > 0 ? "+" : ""}${off} ms, score ${m.sync_score.toFixed(2)}`);
      } else if (typeof m.face_found_rate === "number") {
        facts.push(`lip sync measured (face found in ${Math.round(m.face_found_rate * 100)}% of frames)`);
      }
    } else if (q && q.state === "failed") {
      facts.push("lip sync not measured");
    }
    return facts;
  }

  function showFacts(job, body) {
    job.latest = body;
    if (current !== job) return;
    el.facts.textContent = factsOf(body).join(" · ");
  }

  async function showResult(job, body) {
    job.latest = body;
    const result = body.result || {};
    const url = `${API}/download?task_id=${encodeURIComponent(job.id)}`;
    el.compare.hidden = false;

    const input = inputsOf.get(job.id);
    el.inputMedia.replaceChildren();
    if (input) {
      el.inputMedia.append(mediaElement(input.url, input.kind, "The input face"));
    } else {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = "The input is shown only in the page it was uploaded from.";
      el.inputMedia.append(note);
    }

    const facts = factsOf(body);
    el.facts.textContent = facts.join(" · ");
    el.download.download = result.file || `${job.id}.mp4`;
    // Not a black box until played: a still's own picture as the poster, and for any input
    // the player shows the result's first frame (#t: the browser decodes it at once).
    el.resultVideo.removeAttribute("poster");
    if (input && input.kind === "image") el.resultVideo.poster = input.url;
    el.resultVideo.preload = "auto";

    if (!apiKey()) {  // the browser can stream it directly (Range requests)
      el.resultVideo.src = `${url}#t=0.001`;
      el.download.href = url;
      el.download.removeAttribute("aria-disabled");
      return;
    }
    // With a key the request needs a header, which <video src> cannot send: fetch it once.
    el.facts.textContent = `Loading the result… ${el.facts.textContent}`;
    try {
      const resp = await fetch(url, { headers: headers(), cache: "no-store" });
      if (!resp.ok) throw Object.assign(new Error("download"), { status: resp.status });
      const blob = await resp.blob();
      if (current !== job) return;
      const typed = new Blob([blob], { type: resp.headers.get("content-type") || "video/mp4" });
      resultUrl = URL.createObjectURL(typed);
      el.resultVideo.src = `${resultUrl}#t=0.001`;
      el.download.href = resultUrl;
      el.download.removeAttribute("aria-disabled");
      el.facts.textContent = factsOf(job.latest || body).join(" · ");
    } catch (err) {
      if (current !== job) return;
      el.facts.textContent = factsOf(job.latest || body).join(" · ");
      showProblem(err.status ? problemOf(err.status, null) : { code: "network", message: "" }, "The result could not be loaded");
    }
  }

  async function cancel() {
    const job = current;
    if (!job) return;
    if (job.xhr) { job.xhr.abort(); return; }
    if (!job.id) return;
    el.cancel.disabled = true;
    el.cancel.textContent = "Canceling…";
    el.jobStage.textContent = "Canceling…";
    announce("Canceling");
    let r;
    try {
      r = await api(`${API}/terminate`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ task_id: job.id }),
      });
    } catch {
      el.cancel.disabled = false;
      el.cancel.textContent = "Cancel";
      showProblem({ code: "network", message: "" }, "Could not cancel");
      return;
    }
    if (r.status === 200 || r.status === 202) {
      if (r.body && current === job) render(job, r.body);
    } else if (r.status !== 409) {  // 409: it finished meanwhile; polling shows how
      el.cancel.disabled = false;
      el.cancel.textContent = "Cancel";
      showProblem(problemOf(r.status, r.body), "Could not cancel");
    }
  }

  function openJob(id) {
    stopCurrent();
    resetJobView(id);
    const job = { id, stopped: false, xhr: null };
    current = job;
    renderJobs();
    el.job.scrollIntoView({ behavior: "smooth", block: "start" });
    el.job.setAttribute("tabindex", "-1");
    el.job.focus({ preventScroll: true });
    follow(job);
  }

  // Refresh the stored states once at load (expired results cannot be opened).
  async function refreshJobs() {
    for (const j of jobs.slice()) {
      if (j.state === "expired") continue;
      try {
        const r = await api(`${API}/status?task_id=${encodeURIComponent(j.id)}`);
        if (r.status === 200) updateJob(j.id, { state: r.body.state });
        else if (r.status === 404) updateJob(j.id, { state: "expired" });
        else if (r.status === 401) return;  // wrong or missing key: nothing to learn
      } catch { return; }
    }
  }

  // ---- wiring ---------------------------------------------------------------------------
  el.key.value = store.get(KEY_STORE, "") || "";
  showKeyState();
  el.key.addEventListener("input", () => { store.set(KEY_STORE, apiKey()); showKeyState(); });
  el.key.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); el.keyPanel.open = false; el.keyPanel.querySelector("summary").focus(); }
  });
  el.keyForget.addEventListener("click", () => {
    el.key.value = "";
    store.set(KEY_STORE, "");
    showKeyState();
    el.key.focus();
  });
  el.keyPanel.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && el.keyPanel.open) { el.keyPanel.open = false; el.keyPanel.querySelector("summary").focus(); }
  });
  setupDrop(el.videoDrop, el.videoFile, "video");
  setupDrop(el.audioDrop, el.audioFile, "audio");
  // a file dropped outside the boxes must not navigate away from the page
  ["dragover", "drop"].forEach((type) => window.addEventListener(type, (e) => e.preventDefault()));
  el.form.addEventListener("submit", submit);
  $("audio2-file").addEventListener("change", readSecondLength);
  el.cancel.addEventListener("click", cancel);
  el.recentClear.addEventListener("click", () => { jobs = []; saveJobs(); renderJobs(); el.submit.focus(); });
  renderJobs();
  loadOptions();
  refreshJobs();
})();
