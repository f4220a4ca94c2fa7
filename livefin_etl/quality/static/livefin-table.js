/* livefin: a small stand-in for bootstrap-table, which no Python package ships, so that the
 * Data Docs tables render offline. It supports what GX's index uses: columns (title, field,
 * sortName, visible), data, sortName/sortOrder, rowAttributes, rowStyle, search and the
 * click-row.bs.table event. Methods called by name (resetSearch, clearFilterControl) clear the
 * search box. */
(function ($) {
  "use strict";

  function named(f) {
    return typeof f === "function" ? f : typeof f === "string" ? window[f] : null;
  }

  function truthy(v) {
    return v === true || v === "true";
  }

  function sortRows(rows, options, columns) {
    if (!options.sortName) return rows;
    var col = columns.filter(function (c) { return c.field === options.sortName; })[0] || {};
    var key = col.sortName || options.sortName;
    var sign = options.sortOrder === "desc" ? -1 : 1;
    return rows.slice().sort(function (a, b) {
      var x = a[key], y = b[key];
      if (x === y) return 0;
      if (x === undefined || x === null) return 1;
      if (y === undefined || y === null) return -1;
      return (x < y ? -1 : 1) * sign;
    });
  }

  function render($table, options) {
    var columns = (options.columns || []).filter(function (c) {
      return c.visible === undefined || truthy(c.visible);
    });
    var $head = $("<thead>").append($("<tr>"));
    columns.forEach(function (c) { $head.find("tr").append($("<th>").text(c.title || c.field)); });
    var $body = $("<tbody>");
    var attrs = named(options.rowAttributes), style = named(options.rowStyle);
    sortRows(options.data || [], options, columns).forEach(function (row, i) {
      var $tr = $("<tr>");
      if (attrs) $tr.attr(attrs(row, i));
      if (style && style(row, i).css) $tr.css(style(row, i).css);
      columns.forEach(function (c) {
        var v = row[c.field];
        $tr.append($("<td>").html(v === undefined || v === null ? "" : String(v)));
      });
      $tr.on("click", function () { $table.trigger("click-row.bs.table", [row, $tr]); });
      $body.append($tr);
    });
    $table.empty().append($head, $body).addClass("table table-hover");
    if (truthy(options.search)) {
      var $box = $("<input type='search' class='form-control form-control-sm mb-2' placeholder='Search'>");
      $box.on("input", function () {
        var q = $box.val().toLowerCase();
        $body.children("tr").each(function () {
          $(this).toggle($(this).text().toLowerCase().indexOf(q) >= 0);
        });
      });
      $table.before($box);
      $table.data("livefin-search", $box);
    }
  }

  $.fn.bootstrapTable = function (options) {
    return this.each(function () {
      var $table = $(this);
      if (typeof options === "string") {
        var $box = $table.data("livefin-search");
        if ($box) $box.val("").trigger("input");
        return;
      }
      render($table, options || {});
    });
  };
})(jQuery);
