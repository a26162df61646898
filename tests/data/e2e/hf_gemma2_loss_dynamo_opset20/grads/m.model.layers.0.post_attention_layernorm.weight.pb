 B0m.model.layers.0.post_attention_layernorm.weightJ€Ú€Þ»\z1¼… :Œ<£³»Û"m»Üi—¼\‰Î:z¡9¼#è—<“d€<ÖÞz¼Ãý`»ÑéI¼)¼ºþ‹)º$Hâ:<-¼ö»‡x‡;
²Ø:~Åp<}•;U;åÐ£¼ä6<ªA<rúº\ë¼iðÑ;å($<Â;