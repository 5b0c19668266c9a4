// Injected by scripts/check_pages.py into every page it serves: once the page has loaded, measure
// it as laid out in this window and write the findings, as JSON, into <pre id="check-pages-result">
// (headless Chromium's --dump-dom hands the DOM back to the script).
(function () {
  "use strict";
  var RESULT_ID = "check-pages-result";
  var SCROLLS = { auto: true, scroll: true };

  function describe(el) {
    var name = el.tagName.toLowerCase();
    var cls = (el.getAttribute("class") || "").trim().split(/\s+/).filter(Boolean).slice(0, 2);
    var text = (el.innerText || el.getAttribute("alt") || "").replace(/\s+/g, " ").trim();
    if (text.length > 70) text = text.slice(0, 67) + "...";
    return name + (cls.length ? "." + cls.join(".") : "") + (text ? " '" + text + "'" : "");
  }

  function inside(el, selector) {
    return el.closest ? el.closest(selector) !== null : false;
  }

  // The nearest ancestor (below the article) that scrolls sideways, or null.
  function scrollBox(el, article) {
    for (var a = el.parentElement; a && a !== article; a = a.parentElement) {
      if (SCROLLS[getComputedStyle(a).overflowX]) return a;
    }
    return null;
  }

  function visible(el) {
    var r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return false;
    var s = getComputedStyle(el);
    return s.visibility !== "hidden" && s.display !== "none";
  }

  function run() {
    var findings = [];
    var root = document.documentElement;
    var vw = root.clientWidth;
    var article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
    var col = article.getBoundingClientRect();
    var right = Math.min(col.right, vw);
    var left = Math.max(col.left, 0);

    if (root.scrollWidth > vw + 1) {
      findings.push({ kind: "overflow", what: "the page is " + root.scrollWidth + " px wide in a " + vw + " px window" });
    }

    // Anything that reaches past the text column and is not inside a box that scrolls sideways is
    // either cut off (an ancestor hides its overflow) or pushes the page wider.
    var offending = [];
    var all = article.querySelectorAll("*");
    for (var i = 0; i < all.length; i++) {
      var el = all[i];
      if (inside(el, ".math, mjx-container, .MathJax, script, style, .headerlink")) continue;
      if (!visible(el)) continue;
      var r = el.getBoundingClientRect();
      if (r.right <= right + 1 && r.left >= left - 1) continue;
      var box = scrollBox(el, article);
      if (box) {
        var b = box.getBoundingClientRect();
        if (b.right <= right + 1 && b.left >= left - 1) continue; // it scrolls in its own box
      }
      offending.push(el);
    }
    var set = new Set(offending);
    offending.forEach(function (el) {
      if (el.parentElement && set.has(el.parentElement)) return; // report the outermost only
      var r = el.getBoundingClientRect();
      findings.push({
        kind: "overflow",
        what: describe(el) + " reaches " + Math.round(r.right - right) + " px past the text column"
      });
    });

    // Output text (logs, run-time lines, printed results) must wrap, not scroll. Code listings
    // (show_source) are code, and scroll like code cells.
    var pres = article.querySelectorAll(".cell_output .output pre");
    for (var j = 0; j < pres.length; j++) {
      var p = pres[j];
      if (visible(p) && p.scrollWidth > p.clientWidth + 1) {
        findings.push({ kind: "scroll", what: "output text scrolls sideways: " + describe(p) });
      }
    }

    // Figures: alt text, a caption, and the size the figure is shown at.
    var imgs = article.querySelectorAll(".cell_output img");
    var figures = [];
    for (var k = 0; k < imgs.length; k++) {
      var img = imgs[k];
      var fig = img.closest("figure");
      figures.push({
        src: (img.getAttribute("src") || "").split("/").pop(),
        natural: img.naturalWidth,
        shown: Math.round(img.getBoundingClientRect().width),
        alt: (img.getAttribute("alt") || "").trim(),
        caption: fig && fig.querySelector("figcaption") ? fig.querySelector("figcaption").innerText.trim() : ""
      });
    }

    // Inside the checker's frame (a window narrower than Chromium allows), the result goes to the
    // frame page, which is what --dump-dom prints.
    var host = window.parent !== window ? window.parent.document : document;
    var out = host.createElement("pre");
    out.id = RESULT_ID;
    out.style.display = "none";
    out.textContent = JSON.stringify({ width: vw, column: Math.round(right - left), findings: findings, figures: figures });
    host.body.appendChild(out);
  }

  function later() { setTimeout(run, 300); }
  if (document.readyState === "complete") later();
  else window.addEventListener("load", later);
})();
