 B.llama.layers.0.post_attention_layernorm.weightJ€Bf†;’?×»0=g»ÜÔíº;8,»¦v »øFŸ¼µj»å8¼<>
»pª:úv;r‰¬»˜J±:ú¬Y;_¨»X»;‹;6±®;TU+¼á\¸;šl»Üï;¤q»@š79`çT:ßæÄºrû¼¨í…»°4y:RĞ÷»ùX¼