 B0m.model.layers.1.post_attention_layernorm.weightJ€@T"9ğ ¹€†8¸í9ª-\¹P³V¹jÅĞ¹ü€¸cº9ÏxS¹“„9^Ü1¹t.ºÇç8O[µ9@Â’¹–¸dõş9ÀşD8ã¤¹
Î¶¸~@Ë9DÇÔ¹â<×9ı†1:©­¬9”KT¸m/V9¡[:ÚÎ:ìÄº¹Ís„9