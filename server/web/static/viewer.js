// The page viewer (templates/page.html): zoom, pan, search highlights and the boxes of text
// the station's OCR left out, over the page image
// the server renders (/api/v1/pages/{id}/render?w=…), and the station's capture
// (/api/v1/pages/{id}/capture?w=…) instead of it or beside it. A file of its own because the
// Content-Security-Policy allows no inline script (server/web/security.py).
(function () {
  "use strict";
  var sheet = document.getElementById("sheet");  // the archival page (absent before it arrives)
  var img = document.getElementById("scan");
  var capSheet = document.getElementById("capture-sheet");  // absent without a capture
  var capImg = document.getElementById("capture");
  var canvas = document.getElementById("canvas");
  var label = document.getElementById("zoom-level");
  var first = sheet || capSheet;
  if (!first || !canvas) return;
  var pageId = first.getAttribute("data-page");
  var widths = first.getAttribute("data-widths").split(",").map(Number);
  var rendered = sheet ? parseInt(sheet.getAttribute("data-width"), 10) : 0;
  var capRendered = 0;  // the capture is rendered only once it is first shown
  var aspect = sheet ? parseFloat(sheet.getAttribute("data-aspect")) || 1.414 : 1.414;
  // A rotation (page_views) is a CSS transform on the sheet; turned by 90 or 270 degrees the
  // page is as wide on screen as it is high.
  var turned = sheet ? parseInt(sheet.getAttribute("data-rotation") || "0", 10) % 180 !== 0 : false;
  var view = sheet ? "archival" : "capture";  // "archival" | "capture" | "both"
  var shown = 0;  // CSS pixels across the page as laid out (before the rotation)
  var fitted = 1;  // ... when it fits the canvas (100 % on the zoom label)

  function widthFor(css) {
    // The smallest rendered width that covers what is shown on this screen.
    var need = css * (window.devicePixelRatio || 1);
    for (var i = 0; i < widths.length; i++) { if (widths[i] >= need) return widths[i]; }
    return widths[widths.length - 1];
  }
  function sharpen() {
    var next = widthFor(shown);
    if (sheet && view !== "capture" && next > rendered) {
      rendered = next;
      img.src = "/api/v1/pages/" + pageId + "/render?w=" + next;
    }
    if (capSheet && view !== "archival" && next > capRendered) {
      capRendered = next;
      capImg.src = "/api/v1/pages/" + pageId + "/capture?w=" + next;
    }
  }
  function apply() {
    if (sheet) {
      sheet.style.width = shown + "px";
      sheet.style.height = (shown * aspect) + "px";
    }
    if (capSheet) capSheet.style.width = shown + "px";
    if (label) label.textContent = Math.round(shown / fitted * 100) + "%";
    sharpen();
  }
  function fit() {
    var room = canvas.clientWidth - 4;
    if (view === "both") room = (room - 8) / 2;
    shown = fitted = Math.max(80, turned && view !== "capture" ? room / aspect : room);
    apply();
  }
  function zoom(factor) {
    shown = Math.min(8000, Math.max(80, shown * factor));
    apply();
  }
  function show(next) {
    view = next;
    if (sheet) sheet.hidden = view === "capture";
    if (capSheet) capSheet.hidden = view === "archival";
    document.querySelectorAll("[data-view]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-view") === view));
    });
    fit();
  }
  show(view);
  // The archival page's own shape, once its image is in: `data-aspect` is the capture's, and a
  // page the station turned by 90° (a sheet fed sideways) is the other way round; sized by
  // the capture, its image was stretched to it.
  function reshape() {
    var real = img.naturalWidth ? img.naturalHeight / img.naturalWidth : 0;
    if (!real || Math.abs(real - aspect) < 0.002) return;
    var fitting = shown === fitted;
    aspect = real;
    if (fitting) fit(); else apply();
  }
  if (img) {
    img.addEventListener("load", reshape);
    if (img.complete) reshape();  // loaded before this deferred script ran
  }
  // An image that does not load (the store does not answer: a 503) says so, with a button
  // that asks for it again, instead of a broken-image icon.
  var failedNote = document.getElementById("image-error");
  var failed = [];
  function failedOne(image) {
    if (failed.indexOf(image) < 0) failed.push(image);
    if (failedNote) failedNote.hidden = false;
  }
  function loadedOne(image) {
    failed = failed.filter(function (f) { return f !== image; });
    if (failedNote && !failed.length) failedNote.hidden = true;
  }
  [img, capImg].forEach(function (image) {
    if (!image) return;
    image.addEventListener("error", function () { failedOne(image); });
    image.addEventListener("load", function () { loadedOne(image); });
    // failed before this deferred script ran
    if (image.complete && image.getAttribute("src") && !image.naturalWidth) failedOne(image);
  });
  var retry = document.getElementById("image-retry");
  if (retry) {
    retry.addEventListener("click", function () {
      failed.forEach(function (image) {
        var src = image.getAttribute("src").replace(/&retry=\d+$/, "");
        image.src = src + "&retry=" + Date.now();
      });
    });
  }
  window.addEventListener("resize", function () { if (!shown) fit(); });
  document.querySelectorAll("[data-zoom]").forEach(function (b) {
    b.addEventListener("click", function () {
      var z = b.getAttribute("data-zoom");
      if (z === "fit") fit(); else zoom(parseFloat(z));
    });
  });
  document.querySelectorAll("[data-view]").forEach(function (b) {
    b.addEventListener("click", function () {
      if (!sheet && b.getAttribute("data-view") !== "capture") return;
      show(b.getAttribute("data-view"));
    });
  });
  canvas.addEventListener("wheel", function (e) {
    if (!e.ctrlKey) return;
    e.preventDefault();
    zoom(e.deltaY < 0 ? 1.1 : 0.9);
  }, {passive: false});

  // Pan: drag the page with the mouse (the canvas scrolls; keys and touch scroll natively).
  var drag = null;
  canvas.addEventListener("mousedown", function (e) {
    if (e.button !== 0) return;
    drag = {x: e.clientX, y: e.clientY, left: canvas.scrollLeft, top: canvas.scrollTop};
    canvas.classList.add("panning");
    e.preventDefault();
  });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    canvas.scrollLeft = drag.left - (e.clientX - drag.x);
    canvas.scrollTop = drag.top - (e.clientY - drag.y);
  });
  window.addEventListener("mouseup", function () {
    drag = null;
    canvas.classList.remove("panning");
  });

  // Search words on the image: boxes from the archival PDF/A's OCR text layer, placed in
  // fractions of the page so they follow every zoom.
  var q = sheet ? sheet.getAttribute("data-q") : "";
  // A box over the page (`b`: left, top, width, height in fractions of it), which follows
  // every zoom.
  function mark(className, b, title) {
    var box = document.createElement("span");
    box.className = className;
    box.title = title;
    box.style.left = (b.left * 100) + "%";
    box.style.top = (b.top * 100) + "%";
    box.style.width = (b.width * 100) + "%";
    box.style.height = (b.height * 100) + "%";
    sheet.appendChild(box);
  }
  if (q) {
    fetch("/api/v1/pages/" + pageId + "/words?q=" + encodeURIComponent(q), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (boxes) {
        boxes.forEach(function (b) { mark("hit", b, b.word); });
        var first = sheet.querySelector(".hit");
        if (first) first.scrollIntoView({block: "center", inline: "nearest"});
      });
  }
  // Text the station's OCR left out (review reason unread_text): its boxes, in fractions of
  // the archival page, from the page's decisions (server/archive/review.py unread_boxes).
  var unread = sheet ? JSON.parse(sheet.getAttribute("data-unread") || "[]") : [];
  var unreadTitle = sheet ? sheet.getAttribute("data-unread-title") || "" : "";
  unread.forEach(function (b) { mark("unread", b, unreadTitle); });
  var toggle = document.getElementById("unread-toggle");
  if (toggle && sheet) {
    toggle.addEventListener("click", function () {
      var hidden = sheet.classList.toggle("hide-unread");
      toggle.setAttribute("aria-pressed", hidden ? "false" : "true");
    });
  }
  var hit = document.querySelector("#ocr mark");
  if (hit) hit.scrollIntoView({block: "center"});
})();
