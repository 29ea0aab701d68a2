// The dashboard's page and its files, compiled into the binary (web/assets/, embedded by
// web/embed.cmake at build time): the page fetches nothing from elsewhere.
#pragma once

#include <string_view>

namespace orq::web {

struct Asset {
  std::string_view body;
  std::string_view type;  // its Content-Type
};

// The file of web/assets/ named `name` ("index.html"); null when there is none.
const Asset* FindAsset(std::string_view name);

}  // namespace orq::web
