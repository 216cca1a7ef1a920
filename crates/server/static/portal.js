// Deadbolt portal: live updates over server-sent events, copy buttons, and a question before a
// form marked data-confirm is sent. Pages work without it (where a step cannot be undone, the
// server asks on a page of its own).
(function () {
  "use strict";

  function live(root) {
    var source = new EventSource(root.getAttribute("data-live"));
    source.addEventListener("attempts", function (e) {
      var list = root.querySelector("#attempts");
      if (list) {
        list.insertAdjacentHTML("afterbegin", e.data);
        var table = list.closest("table");
        if (table) {
          label(table);
        }
        list.querySelectorAll(".long").forEach(expandable);
      }
      var empty = root.querySelector("#attempts-empty");
      if (empty) {
        empty.remove();
      }
    });
    source.addEventListener("accounts", function (e) {
      var section = root.querySelector("#accounts");
      if (section) {
        section.outerHTML = e.data;
      }
    });
  }

  function copy(button) {
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) {
      return;
    }
    var text = target.textContent;
    var done = function () {
      button.textContent = "Copied";
      button.classList.add("copied");
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () {
        fallback(target);
        done();
      });
    } else {
      fallback(target);
      done();
    }
  }

  // Selects the text and copies it the old way (clipboard API refused or missing).
  function fallback(target) {
    var range = document.createRange();
    range.selectNodeContents(target);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try {
      document.execCommand("copy");
    } catch (err) {
      // The text stays selected for the person to copy by hand.
    }
  }

  // On a phone, tables are stacked cards (portal.css): each cell is labelled with its column's
  // header so that a value is not read without its name.
  function label(table) {
    var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      Array.prototype.forEach.call(tr.children, function (td, i) {
        if (heads[i] && !td.hasAttribute("data-label")) {
          td.setAttribute("data-label", heads[i]);
        }
      });
    });
  }

  // Long values the client sent are cut to two lines; a click (or Enter) shows them whole.
  function expandable(el) {
    if (el.getAttribute("data-expandable") || el.scrollHeight <= el.clientHeight + 1) {
      return;
    }
    el.setAttribute("data-expandable", "1");
    el.setAttribute("tabindex", "0");
    el.setAttribute("title", "Show all");
    var toggle = function () {
      el.classList.toggle("open");
    };
    el.addEventListener("click", toggle);
    el.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        toggle();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table").forEach(label);
    document.querySelectorAll(".long").forEach(expandable);
    // On a phone the links scroll sideways: the current page's is brought into view.
    var current = document.querySelector("header nav [aria-current]");
    if (current && current.scrollIntoView) {
      current.scrollIntoView({ block: "nearest", inline: "center" });
    }
    document.querySelectorAll("[data-live]").forEach(live);
    // One listener for every form, also those a live update inserts later.
    document.addEventListener("submit", function (e) {
      var form = e.target;
      var question = form && form.getAttribute && form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) {
        e.preventDefault();
      }
    });
    document.querySelectorAll("button[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () {
        copy(b);
      });
    });
  });
})();
