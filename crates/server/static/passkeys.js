// Deadbolt portal: passkeys. The browser makes and uses them (navigator.credentials); the
// server keeps each ceremony's challenge. Requests carry the page's form token in a header.
(function () {
  "use strict";

  function toBuffer(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) {
      s += "=";
    }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function toText(buf) {
    if (!buf) {
      return null;
    }
    var bytes = new Uint8Array(buf);
    var s = "";
    for (var i = 0; i < bytes.length; i++) {
      s += String.fromCharCode(bytes[i]);
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, token, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-deadbolt-csrf": token },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () {
        return {};
      }).then(function (j) {
        if (!r.ok) {
          throw new Error(j.message || "The server answered " + r.status + ".");
        }
        return j;
      });
    });
  }

  function creation(options) {
    var pk = options.publicKey;
    site = (pk.rp && pk.rp.id) || "";
    pk.challenge = toBuffer(pk.challenge);
    pk.user.id = toBuffer(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) {
      c.id = toBuffer(c.id);
    });
    return { publicKey: pk };
  }

  function request(options) {
    var pk = options.publicKey;
    site = pk.rpId || "";
    pk.challenge = toBuffer(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) {
      c.id = toBuffer(c.id);
    });
    return { publicKey: pk };
  }

  function made(c) {
    return {
      id: c.id,
      rawId: toText(c.rawId),
      type: c.type,
      response: {
        attestationObject: toText(c.response.attestationObject),
        clientDataJSON: toText(c.response.clientDataJSON)
      },
      extensions: c.getClientExtensionResults()
    };
  }

  function used(c) {
    return {
      id: c.id,
      rawId: toText(c.rawId),
      type: c.type,
      response: {
        authenticatorData: toText(c.response.authenticatorData),
        clientDataJSON: toText(c.response.clientDataJSON),
        signature: toText(c.response.signature),
        userHandle: toText(c.response.userHandle)
      },
      extensions: c.getClientExtensionResults()
    };
  }

  // The site the server's passkeys belong to, once the server named it.
  var site = "";

  function show(error) {
    var out = document.getElementById("passkey-error");
    if (!out) {
      return;
    }
    if (error.name === "NotAllowedError") {
      out.textContent = "The passkey was not used (cancelled, or none for this site). Try again.";
    } else if (error.name === "SecurityError" && site && site !== window.location.hostname) {
      // A server without a public URL offers passkeys at localhost, not at 127.0.0.1.
      out.textContent = "Passkeys of this portal belong to " + site + ": open the portal at that address.";
    } else {
      out.textContent = error.message;
    }
    out.hidden = false;
  }

  function busy(button, on) {
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
  }

  function unsupported() {
    if (window.PublicKeyCredential && navigator.credentials) {
      return false;
    }
    show(new Error("This browser cannot use passkeys."));
    return true;
  }

  // A new passkey: the form's name, the server's challenge, the authenticator's answer.
  var form = document.getElementById("passkey-add-form");
  if (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (form.getAttribute("data-spent")) {
        // The page's one-time token went with the last try: a fresh page brings a new one.
        window.location.reload();
        return;
      }
      if (unsupported()) {
        return;
      }
      var button = form.querySelector("button[type=submit]");
      busy(button, true);
      var token = form.querySelector("input[name=csrf]").value;
      var name = form.querySelector("input[name=name]").value;
      post(form.getAttribute("data-options"), token, { name: name })
        .then(function (j) {
          return navigator.credentials.create(creation(j.options)).then(function (c) {
            return post(form.getAttribute("data-finish"), j.csrf, { id: j.id, credential: made(c) });
          });
        })
        .then(function (j) {
          window.location.assign(j.to);
        })
        .catch(function (err) {
          show(err);
          form.setAttribute("data-spent", "1");
          button.textContent = "Try again";
          busy(button, false);
        });
    });
  }

  // Signing in with a passkey, alone or after the password.
  ["passkey-sign-in", "passkey-second-factor"].forEach(function (id) {
    var button = document.getElementById(id);
    if (!button) {
      return;
    }
    button.addEventListener("click", function () {
      if (unsupported()) {
        return;
      }
      busy(button, true);
      var token = button.getAttribute("data-csrf");
      post(button.getAttribute("data-options"), token, {})
        .then(function (j) {
          return navigator.credentials.get(request(j.options)).then(function (c) {
            return post(button.getAttribute("data-finish"), token, {
              id: j.id || "",
              credential: used(c),
              next: button.getAttribute("data-next") || ""
            });
          });
        })
        .then(function (j) {
          window.location.assign(j.to);
        })
        .catch(function (err) {
          show(err);
          busy(button, false);
        });
    });
  });
})();
