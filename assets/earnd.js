/* earnd.js: keeps the referral click id in a first-party cookie and reports signups.
 * Embed on the merchant's pages:
 *   <script src="https://go.example.com/v1/earnd.js" data-key="pk_..." async></script>
 * Optional attributes: data-param (the click parameter, default earnd_cid), data-cookie-days (30).
 * API: earnd.clickId() returns the stored click id or null; earnd.signup({event_id, customer_id})
 * reports a signup with the publishable key: earnd attributes it and binds the customer, but pays
 * signup rewards only for signups the merchant's server reports with the secret key (anyone can
 * send what a browser sends). Sales are reported server to server only. */
(function () {
  "use strict";
  var script = document.currentScript;
  var attr = function (name, fallback) {
    var v = script && script.getAttribute(name);
    return v === null || v === undefined || v === "" ? fallback : v;
  };
  var key = attr("data-key", "");
  var param = attr("data-param", "earnd_cid");
  var days = parseInt(attr("data-cookie-days", "30"), 10) || 30;
  var origin = script ? new URL(script.src, location.href).origin : location.origin;
  var idPattern = /^[0-9a-zA-Z]{26}$/;

  function readCookie() {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === param) {
        var v = decodeURIComponent(parts[i].slice(eq + 1));
        return idPattern.test(v) ? v : null;
      }
    }
    return null;
  }

  function keepFromUrl() {
    var id = new URLSearchParams(location.search).get(param);
    if (!id || !idPattern.test(id)) {
      return;
    }
    var cookie = param + "=" + encodeURIComponent(id) + "; Max-Age=" + days * 86400 +
      "; Path=/; SameSite=Lax";
    if (location.protocol === "https:") {
      cookie += "; Secure";
    }
    document.cookie = cookie;
  }

  function send(body) {
    var url = origin + "/v1/conversions";
    var text = JSON.stringify(body);
    // text/plain keeps this a simple request: no CORS preflight, and the key is in the body.
    if (navigator.sendBeacon && navigator.sendBeacon(url, new Blob([text], {type: "text/plain"}))) {
      return Promise.resolve(true);
    }
    return fetch(url, {method: "POST", body: text, keepalive: true, mode: "no-cors",
                       headers: {"Content-Type": "text/plain"}}).then(function () { return true; });
  }

  keepFromUrl();
  window.earnd = {
    clickId: readCookie,
    signup: function (opts) {
      opts = opts || {};
      if (!key || !opts.event_id) {
        return Promise.reject(new Error("earnd: data-key and event_id are required"));
      }
      var body = {publishable_key: key, type: "signup", event_id: String(opts.event_id)};
      if (opts.customer_id) {
        body.customer_id = String(opts.customer_id);
      }
      var cid = readCookie();
      if (cid) {
        body.click_id = cid;
      }
      return send(body);
    }
  };
})();
